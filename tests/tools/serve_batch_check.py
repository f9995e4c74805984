"""Continuous batching checks against a running augur serve (tests/mpi/serve_batch.sh):
requests running together each answer exactly what they answer alone."""
import argparse
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_client import Server, stream_text  # noqa: E402
from serve_api_check import COMPL, check, completion, metric, wait_for  # noqa: E402

PROMPTS = ["static int", "int", "for (int i = 0; i < n; i++) {", "return"]


def run_all(jobs):
    """Runs fn() of every job in its own thread at once; returns {name: result or exception}."""
    out = {}

    def run(name, fn):
        try:
            out[name] = fn()
        except Exception as ex:  # reported by the caller
            out[name] = ex

    ts = [threading.Thread(target=run, args=job) for job in jobs]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def text_of(doc):
    check(not isinstance(doc, Exception), f"request failed: {doc!r}")
    return doc["choices"][0]["text"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--max-tokens", type=int, required=True)
    ap.add_argument("--seeded-prompt", required=True)
    ap.add_argument("--seeded-file", required=True, help="augur generate --seed's completion of --seeded-prompt")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--temperature", type=float, required=True)
    a = ap.parse_args()
    srv = Server("127.0.0.1", a.port)
    n = a.max_tokens
    seeded_ref = open(a.seeded_file, encoding="utf-8").read()

    # each request alone: the references (the last prompt target-only)
    def body(i):
        return {"speculation": i != len(PROMPTS) - 1}
    refs = [text_of(completion(srv, p, n + 3 * i, **body(i))) for i, p in enumerate(PROMPTS)]
    seeded = {"prompt": a.seeded_prompt, "max_tokens": n, "temperature": a.temperature, "seed": a.seed}
    st, _, doc = srv.post(COMPL, seeded)
    check(st == 200 and text_of(doc) == seeded_ref,
          f"a seeded request alone differs from augur generate --seed: {text_of(doc)!r} vs {seeded_ref!r}")
    print("ok: alone: greedy references; seeded sampling equals augur generate --seed")

    # all together, with a client that leaves mid-stream beside them
    cancelled0 = metric(srv, "augur_requests_total{outcome=\"cancelled\"}")
    jobs = [(f"g{i}", (lambda i=i, p=p: completion(srv, p, n + 3 * i, **body(i)))) for i, p in enumerate(PROMPTS)]
    jobs.append(("seeded", lambda: srv.post(COMPL, seeded)[2]))
    jobs.append(("gone", lambda: srv.stream(COMPL, {"prompt": PROMPTS[0], "max_tokens": 600, "temperature": 0,
                                                    "stream": True}, on_event=lambda i, d: i < 2)))
    got = run_all(jobs)
    for i in range(len(PROMPTS)):
        check(text_of(got[f"g{i}"]) == refs[i], f"request {i} among others differs from it alone: "
                                                 f"{text_of(got[f'g{i}'])!r} vs {refs[i]!r}")
    check(text_of(got["seeded"]) == seeded_ref, "the seeded request among others differs from augur generate --seed")
    wait_for("the stream's client being noticed gone",
             lambda: metric(srv, "augur_requests_total{outcome=\"cancelled\"}") == cancelled0 + 1)
    wait_for("every slot freed", lambda: metric(srv, "augur_requests_running") == 0)
    check(metric(srv, "augur_kv_positions_used") == 0, "KV positions still in use once every request ended")
    check(metric(srv, "augur_kv_blocks_used") == 0, "KV pool blocks still in use once every request ended")
    print(f"ok: {len(jobs) - 1} concurrent requests (one target-only, one seeded) equal their answers alone; "
          "a client gone mid-stream freed its slot")

    # a request joining while another runs: both unchanged, the short one done first
    long_n = 400
    long_ref = text_of(completion(srv, PROMPTS[2], long_n))
    short_ref = text_of(completion(srv, PROMPTS[1], 4))
    done = {}

    def run_long():
        st, events, _ = srv.stream(COMPL, {"prompt": PROMPTS[2], "max_tokens": long_n, "temperature": 0,
                                           "stream": True})
        done["long"] = (time.monotonic(), stream_text(events, "completion")[0])

    t = threading.Thread(target=run_long)
    t.start()
    wait_for("the long request generating", lambda: metric(srv, "augur_completion_tokens_total") > 0 and
             metric(srv, "augur_requests_running") == 1 and metric(srv, "augur_kv_positions_used") > 0 and
             metric(srv, "augur_kv_blocks_used") > 0)
    short = text_of(completion(srv, PROMPTS[1], 4))
    t_short = time.monotonic()
    t.join()
    check("long" in done and done["long"][1] == long_ref, "the long request differs once another joined it")
    check(short == short_ref, f"the joining request differs from it alone: {short!r} vs {short_ref!r}")
    check(t_short < done["long"][0], "the joining request did not finish before the long one")
    print("ok: a request joining a running one finishes first; both equal their answers alone")
    print("PASS batch")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as ex:
        print(f"FAIL: {ex}", file=sys.stderr)
        sys.exit(1)
