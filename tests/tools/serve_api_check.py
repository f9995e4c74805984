"""Checks of augur serve's HTTP API against a running server (tests/mpi/serve_api.sh).

Each check prints 'ok: ...' or raises with what differed. Modes:
  api    endpoints, streaming format, greedy equality, stop strings, every bad input,
         a full queue, clients leaving while queued and mid-stream
  drain  SIGTERM to rank 0 with one request admitted: 503 for new ones, the admitted one
         answered in full
"""
import argparse
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_client import Server, stream_text  # noqa: E402

COMPL, CHAT = "/v1/completions", "/v1/chat/completions"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def metric(srv, name):
    status, _, body = srv.request("GET", "/metrics")
    check(status == 200, f"/metrics answered {status}")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"/metrics has no sample {name}")


def wait_for(what, pred, limit_s=120):
    """Polls pred (state, not time, is what is asserted; the limit only stops a hang)."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {limit_s} s")


def expect_error(srv, path, body, status, code=None, param=None, raw=False, headers=None):
    st, hdrs, data = srv.request("POST", path, body if raw else json.dumps(body), headers=headers)
    check(st == status, f"{path} {str(body)[:80]}: status {st}, expected {status}: {data[:300]!r}")
    doc = json.loads(data)
    err = doc.get("error")
    check(isinstance(err, dict) and set(err) == {"message", "type", "param", "code"},
          f"error object malformed: {doc}")
    check(isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str),
          f"error without message/type: {doc}")
    if code is not None:
        check(err["code"] == code, f"{str(body)[:80]}: code {err['code']!r}, expected {code!r} ({err['message']})")
    if param is not None:
        check(err["param"] == param, f"{str(body)[:80]}: param {err['param']!r}, expected {param!r}")
    print(f"ok: {status} {err['code']}: {err['message'][:90]}")
    return hdrs


def completion(srv, prompt, n, **kw):
    body = {"prompt": prompt, "max_tokens": n, "temperature": 0, **kw}
    st, _, doc = srv.post(COMPL, body)
    check(st == 200, f"completion: status {st}: {doc}")
    return doc


def check_endpoints(srv, model):
    st, _, body = srv.request("GET", "/health")
    check(st == 200 and json.loads(body)["status"] == "ok", f"/health: {st} {body!r}")
    st, _, body = srv.request("GET", "/v1/models")
    doc = json.loads(body)
    check(st == 200 and doc["object"] == "list" and doc["data"][0]["id"] == model, f"/v1/models: {doc}")
    st, hdrs, body = srv.request("GET", "/metrics")
    text = body.decode()
    check(st == 200 and hdrs["content-type"].startswith("text/plain"), f"/metrics: {st} {hdrs}")
    for name in ("augur_requests_total{outcome=\"success\"}", "augur_queue_depth", "augur_kv_positions_used",
                 "augur_spec_acceptance_rate", "augur_spec_tokens_per_round", "augur_time_to_first_token_seconds_bucket",
                 "augur_inter_token_latency_seconds_count", "augur_prompt_tokens_total",
                 "augur_completion_tokens_total"):
        check(name in text, f"/metrics lacks {name}")
    check("# TYPE augur_time_to_first_token_seconds histogram" in text, "/metrics: TTFT is not a histogram")
    print("ok: /health, /v1/models, /metrics")


def check_greedy(srv, prompt, n, expected, model):
    doc = completion(srv, prompt, n)
    ch = doc["choices"][0]
    check(doc["object"] == "text_completion" and doc["model"] == model, f"completion shape: {doc}")
    check(ch["text"] == expected, f"greedy completion differs from augur generate:\n  got  {ch['text']!r}\n"
                                  f"  want {expected!r}")
    u = doc["usage"]
    check(u["completion_tokens"] == n and ch["finish_reason"] == "length", f"usage/finish: {doc}")
    check(u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], f"total_tokens: {u}")
    a = u["augur"]
    check(a["speculation"] is True and a["rounds"] >= 1 and a["rounds"] <= n and
          0 <= a["accepted_tokens"] <= a["proposed_tokens"], f"augur usage: {u}")
    print(f"ok: greedy completion equals augur generate ({n} tokens, {a['rounds']} rounds, "
          f"{a['accepted_tokens']}/{a['proposed_tokens']} accepted)")
    # the same target-only
    doc = completion(srv, prompt, n, speculation=False)
    u = doc["usage"]
    check(doc["choices"][0]["text"] == expected, "speculation=false gives another greedy text")
    check(u["augur"]["speculation"] is False and u["augur"]["rounds"] == n and u["augur"]["proposed_tokens"] == 0,
          f"target-only usage: {u}")
    print("ok: \"speculation\": false gives the same text, one round per token")
    # streamed
    st, events, raw = srv.stream(COMPL, {"prompt": prompt, "max_tokens": n, "temperature": 0, "stream": True,
                                         "stream_options": {"include_usage": True}})
    check(st == 200, f"stream status {st}: {raw[:300]}")
    text, finish, usage, _ = stream_text(events, "completion")
    check(text == expected and finish == "length", f"streamed text differs: {text!r} ({finish})")
    check(usage and usage["completion_tokens"] == n, f"stream usage: {usage}")
    check(raw.endswith("data: [DONE]\n\n"), "the stream does not end with 'data: [DONE]' and a blank line")
    print(f"ok: streamed completion equals it ({len(events) - 2} text chunks, usage chunk, [DONE])")
    # token ids as the prompt
    return doc


def check_chat(srv, model):
    body = {"model": model, "messages": [{"role": "system", "content": "kernel code"},
                                         {"role": "user", "content": "static int"}],
            "max_tokens": 12, "temperature": 0}
    st, _, doc = srv.post(CHAT, body)
    check(st == 200 and doc["object"] == "chat.completion", f"chat: {st} {doc}")
    msg = doc["choices"][0]["message"]
    check(msg["role"] == "assistant" and isinstance(msg["content"], str), f"chat message: {doc}")
    st, events, raw = srv.stream(CHAT, {**body, "stream": True})
    check(st == 200, f"chat stream status {st}")
    text, finish, usage, _ = stream_text(events, "chat")
    check(text == msg["content"] and finish == doc["choices"][0]["finish_reason"],
          f"streamed chat differs: {text!r} vs {msg['content']!r}")
    check(usage is None, "usage chunk sent without stream_options.include_usage")
    # content as text parts renders the same prompt
    parts = {**body, "messages": [{"role": "system", "content": [{"type": "text", "text": "kernel code"}]},
                                  {"role": "user", "content": [{"type": "text", "text": "static "},
                                                               {"type": "text", "text": "int"}]}]}
    st, _, doc2 = srv.post(CHAT, parts)
    check(st == 200 and doc2["choices"][0]["message"]["content"] == msg["content"], "text-part content differs")
    print(f"ok: chat completion, streamed chat (role chunk first), text parts: {msg['content'][:40]!r}")


def check_stop(srv, prompt, n, expected):
    # a stop string from the middle of the greedy text: the answer ends right before it
    stop = expected[len(expected) // 2: len(expected) // 2 + 3]
    cut = expected.find(stop)
    check(cut > 0, f"no usable stop string in {expected!r}")
    doc = completion(srv, prompt, n, stop=[stop, "\u00a7never\u00a7"])
    ch = doc["choices"][0]
    check(ch["text"] == expected[:cut] and ch["finish_reason"] == "stop",
          f"stop {stop!r}: got {ch['text']!r} ({ch['finish_reason']}), want {expected[:cut]!r}")
    st, events, _ = srv.stream(COMPL, {"prompt": prompt, "max_tokens": n, "temperature": 0, "stream": True,
                                       "stop": stop})
    text, finish, _, _ = stream_text(events, "completion")
    check(text == expected[:cut] and finish == "stop", f"streamed stop: {text!r} ({finish})")
    print(f"ok: stop {stop!r} ends the text at byte {cut}, streamed too (no part of it sent)")


def check_bad_input(srv, context, max_body):
    e = expect_error
    e(srv, COMPL, "{\"prompt\": \"x\",", 400, "invalid_json", raw=True)
    e(srv, COMPL, "[1, 2]", 400, "invalid_json", raw=True)
    e(srv, COMPL, "", 400, "invalid_json", raw=True)
    e(srv, COMPL, "{\"prompt\": \"a\", \"prompt\": \"b\"}", 400, "invalid_json", raw=True)
    e(srv, COMPL, {"prompt": "x", "max_tokenz": 5}, 400, "unknown_field", "max_tokenz")
    e(srv, COMPL, {"prompt": "x", "max_tokens": "5"}, 400, "invalid_type", "max_tokens")
    e(srv, COMPL, {"prompt": "x", "max_tokens": 2.5}, 400, "invalid_type", "max_tokens")
    e(srv, COMPL, {"prompt": "x", "max_tokens": 0}, 400, "invalid_value", "max_tokens")
    e(srv, COMPL, {"prompt": "x", "temperature": 2.5}, 400, "invalid_value", "temperature")
    e(srv, COMPL, {"prompt": "x", "temperature": "hot"}, 400, "invalid_type", "temperature")
    e(srv, COMPL, {"prompt": "x", "top_p": 0}, 400, "invalid_value", "top_p")
    e(srv, COMPL, {"prompt": "x", "top_p": 1.5}, 400, "invalid_value", "top_p")
    e(srv, COMPL, {"prompt": "x", "top_k": -2}, 400, "invalid_value", "top_k")
    e(srv, COMPL, {"prompt": "x", "seed": -1}, 400, "invalid_value", "seed")
    e(srv, COMPL, {"prompt": "x", "n": 2}, 400, "unsupported_value", "n")
    e(srv, COMPL, {"prompt": "x", "stream": "yes"}, 400, "invalid_type", "stream")
    e(srv, COMPL, {"prompt": "x", "speculation": 1}, 400, "invalid_type", "speculation")
    e(srv, COMPL, {"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, 400, "invalid_value", "stop")
    e(srv, COMPL, {"prompt": "x", "stop": [""]}, 400, "invalid_value", "stop")
    e(srv, COMPL, {"prompt": "x", "stop": 5}, 400, "invalid_type", "stop")
    e(srv, COMPL, {"prompt": "x", "stream_options": {"include_usage": True}}, 400, "invalid_value", "stream_options")
    e(srv, COMPL, {"prompt": "x", "presence_penalty": 0.5}, 400, "unsupported_value", "presence_penalty")
    e(srv, COMPL, {"max_tokens": 5}, 400, "missing_field", "prompt")
    e(srv, COMPL, {"prompt": ""}, 400, "invalid_value", "prompt")
    e(srv, COMPL, {"prompt": ["a", "b"]}, 400, "invalid_value", "prompt")
    e(srv, COMPL, {"prompt": [1, 2, 99999999]}, 400, "invalid_value", "prompt")
    e(srv, COMPL, {"prompt": "x", "model": "no-such-model"}, 404, "model_not_found", "model")
    e(srv, CHAT, {"messages": []}, 400, "invalid_value", "messages")
    e(srv, CHAT, {"messages": [{"role": "wizard", "content": "x"}]}, 400, "invalid_value", "messages")
    e(srv, CHAT, {"messages": [{"role": "user"}]}, 400, "missing_field", "messages")
    e(srv, CHAT, {"messages": [{"role": "user", "content": "x", "mood": "glad"}]}, 400, "unknown_field", "messages")
    e(srv, CHAT, {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, 400,
      "invalid_value", "messages")
    e(srv, CHAT, {"prompt": "x"}, 400, "unknown_field", "prompt")
    # the context: a prompt that fills it, and a max_tokens past it
    e(srv, COMPL, {"prompt": [5] * context, "max_tokens": 1}, 400, "context_length_exceeded", "prompt")
    e(srv, COMPL, {"prompt": [5] * 10, "max_tokens": context}, 400, "context_length_exceeded", "max_tokens")
    # a body over the limit
    e(srv, COMPL, {"prompt": "y" * (max_body + 10)}, 413, "request_too_large")
    # routes and methods
    st, _, data = srv.request("GET", "/v1/nothing")
    check(st == 404 and json.loads(data)["error"]["code"] == "not_found", f"unknown path: {st} {data!r}")
    st, hdrs, data = srv.request("GET", COMPL)
    check(st == 405 and hdrs.get("allow") == "POST", f"GET {COMPL}: {st} {hdrs}")
    st, _, data = srv.request("POST", "/health", "{}")
    check(st == 405, f"POST /health: {st}")
    print("ok: unknown path 404, wrong methods 405")


def check_queue_and_cancel(srv, prompt, expected, n, hold, max_queue):
    """With the engine held, admitted requests wait: one more than --max-queue is 503;
    clients that leave while queued are dropped without generating."""
    open(hold, "w").close()
    results = {}

    def run(i):
        try:
            results[i] = completion(srv, prompt, n)
        except Exception as ex:  # reported below
            results[i] = ex

    threads = [threading.Thread(target=run, args=(i,)) for i in range(max_queue - 1)]
    for t in threads:
        t.start()
    wait_for("the first requests queueing", lambda: metric(srv, "augur_queue_depth") == max_queue - 1)
    # a streaming client that leaves while queued
    cancelled0 = metric(srv, "augur_requests_total{outcome=\"cancelled\"}")
    c = srv.conn()
    c.request("POST", COMPL, body=json.dumps({"prompt": prompt, "max_tokens": n, "temperature": 0, "stream": True}),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    check(r.status == 200, f"queued stream: {r.status}")
    check(metric(srv, "augur_queue_depth") == max_queue, "the stream did not queue")
    hdrs = expect_error(srv, COMPL, {"prompt": prompt, "max_tokens": n}, 503, "server_overloaded")
    check(hdrs.get("retry-after", "").isdigit(), f"503 without Retry-After: {hdrs}")
    c.close()
    wait_for("the queued stream's client being noticed gone",
             lambda: metric(srv, "augur_requests_total{outcome=\"cancelled\"}") == cancelled0 + 1)
    tokens0 = metric(srv, "augur_completion_tokens_total")
    os.unlink(hold)
    for t in threads:
        t.join()
    for i, res in results.items():
        check(not isinstance(res, Exception), f"queued request {i} failed: {res}")
        check(res["choices"][0]["text"] == expected, f"queued request {i}: {res['choices'][0]['text']!r}")
    wait_for("the queue emptying", lambda: metric(srv, "augur_requests_running") == 0)
    got = metric(srv, "augur_completion_tokens_total") - tokens0
    check(got == n * len(results), f"{got} tokens generated after the release, expected {n * len(results)} "
                                   "(the abandoned request must not run)")
    print(f"ok: queue full -> 503 with Retry-After; a client gone while queued is dropped; "
          f"{len(results)} queued requests answered correctly")


def check_cancel_mid_stream(srv, prompt, expected, n, context):
    """A client that closes its stream mid-way: its generation stops early and the next
    request is unaffected."""
    long_n = context - 64
    cancelled0 = metric(srv, "augur_requests_total{outcome=\"cancelled\"}")
    tokens0 = metric(srv, "augur_completion_tokens_total")
    st, events, _ = srv.stream(COMPL, {"prompt": prompt, "max_tokens": long_n, "temperature": 0, "stream": True},
                               on_event=lambda i, d: i < 2)
    check(st == 200 and len(events) == 3, f"mid-stream: {st}, {len(events)} events")
    wait_for("the stream's client being noticed gone",
             lambda: metric(srv, "augur_requests_total{outcome=\"cancelled\"}") == cancelled0 + 1)
    wait_for("its generation ending", lambda: metric(srv, "augur_requests_running") == 0)
    got = metric(srv, "augur_completion_tokens_total") - tokens0
    check(got < long_n, f"the abandoned stream generated all {long_n} tokens: generation did not stop")
    check(metric(srv, "augur_kv_positions_used") == 0, "KV positions still in use after the cancel")
    doc = completion(srv, prompt, n)
    check(doc["choices"][0]["text"] == expected, "a request after the cancel differs")
    print(f"ok: client gone mid-stream: generation stopped after {int(got)} of {long_n} tokens; "
          "the next request is unaffected")


def check_interleaving(srv, prompt, hold):
    """Batched: a short request admitted behind a long one finishes first,
    and both answers equal the same requests run alone (greedy)."""
    long_n, short_n = 300, 4
    long_ref = completion(srv, prompt, long_n)["choices"][0]["text"]
    short_prompt = "int"
    short_ref = completion(srv, short_prompt, short_n)["choices"][0]["text"]
    open(hold, "w").close()
    done = {}

    def run_long():
        try:
            st, events, raw = srv.stream(COMPL, {"prompt": prompt, "max_tokens": long_n, "temperature": 0,
                                                 "stream": True})
            done["long"] = (time.monotonic(), stream_text(events, "completion")[0])
        except Exception as ex:  # reported below
            done["long"] = (time.monotonic(), repr(ex))

    t = threading.Thread(target=run_long)
    t.start()
    wait_for("the long request queueing", lambda: metric(srv, "augur_queue_depth") == 1)
    result = {}

    def run_short():
        result["doc"] = completion(srv, short_prompt, short_n)
        result["t"] = time.monotonic()

    ts = threading.Thread(target=run_short)
    ts.start()
    wait_for("the short request queueing behind it", lambda: metric(srv, "augur_queue_depth") == 2)
    os.unlink(hold)
    ts.join()
    t.join()
    check("doc" in result, "the short request failed")
    check(result["doc"]["choices"][0]["text"] == short_ref, "the interleaved short request differs from it alone")
    check(done["long"][1] == long_ref, f"the interleaved long request differs from it alone: {done['long'][1]!r:.200}")
    check(result["t"] < done["long"][0], "the short request admitted behind a long one did not finish first")
    print(f"ok: interleaving: a {short_n}-token request behind a {long_n}-token one finishes first; "
          "both equal the requests alone")


def check_outcomes(srv):
    for outcome, least in (("success", 10), ("invalid", 30), ("too_large", 1), ("rejected", 1), ("cancelled", 2)):
        v = metric(srv, f"augur_requests_total{{outcome=\"{outcome}\"}}")
        check(v >= least, f"augur_requests_total{{outcome=\"{outcome}\"}} is {v}, expected >= {least}")
    print("ok: /metrics counts requests by outcome")


def drain(srv, prompt, expected, n, hold, pid):
    open(hold, "w").close()
    result = {}
    def run():
        try:
            result["doc"] = completion(srv, prompt, n)
        except Exception as ex:  # reported below
            result["error"] = repr(ex)

    t = threading.Thread(target=run)
    t.start()
    wait_for("the request queueing", lambda: metric(srv, "augur_queue_depth") == 1)
    os.kill(pid, signal.SIGTERM)
    wait_for("/health turning 503", lambda: srv.request("GET", "/health")[0] == 503)
    hdrs = expect_error(srv, COMPL, {"prompt": prompt, "max_tokens": n}, 503, "server_shutting_down")
    check("retry-after" in hdrs, "draining 503 without Retry-After")
    os.unlink(hold)
    t.join()
    check("doc" in result and result["doc"]["choices"][0]["text"] == expected,
          f"the admitted request was not answered in full during the drain: {result}")
    print("ok: SIGTERM: new requests 503, the admitted one answered in full")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["api", "drain"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--expected-file", required=True, help="augur generate's greedy completion of --prompt")
    ap.add_argument("--max-tokens", type=int, required=True)
    ap.add_argument("--model", default="target")
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--max-body", type=int, default=8192)
    ap.add_argument("--max-queue", type=int, default=3)
    ap.add_argument("--hold-file", required=True)
    ap.add_argument("--pid", type=int)
    ap.add_argument("--interleave", action="store_true", help="the server runs several requests at once (--max-running > 1)")
    a = ap.parse_args()
    srv = Server("127.0.0.1", a.port)
    expected = open(a.expected_file, encoding="utf-8").read()
    if a.mode == "drain":
        drain(srv, a.prompt, expected, a.max_tokens, a.hold_file, a.pid)
        return
    check_endpoints(srv, a.model)
    check_greedy(srv, a.prompt, a.max_tokens, expected, a.model)
    check_chat(srv, a.model)
    check_stop(srv, a.prompt, a.max_tokens, expected)
    check_bad_input(srv, a.context, a.max_body)
    check_queue_and_cancel(srv, a.prompt, expected, a.max_tokens, a.hold_file, a.max_queue)
    check_cancel_mid_stream(srv, a.prompt, expected, a.max_tokens, a.context)
    if a.interleave:
        check_interleaving(srv, a.prompt, a.hold_file)
    check_outcomes(srv)
    print("PASS api")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as ex:
        print(f"FAIL: {ex}", file=sys.stderr)
        sys.exit(1)
