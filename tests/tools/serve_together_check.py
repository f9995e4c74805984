#!/usr/bin/env python3
"""Sends each prompt alone to an augur serve on 127.0.0.1:PORT (greedy), then all of them at
once, and fails unless every answer together equals the same request alone. With
--blocks-capacity C it also checks /metrics: the KV pool has C blocks, never more in use
while the requests run, and none once they ended. With --hold FILE (the server's
--debug-hold-file) the requests sent together are held in the queue until all of them wait
there, so that they start in the same round."""
import argparse, json, os, sys, threading, time, urllib.request


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--max-tokens", type=int, required=True)
    ap.add_argument("--blocks-capacity", type=int)
    ap.add_argument("--hold", help="the server's --debug-hold-file: start the requests sent together at once")
    ap.add_argument("--what", required=True, help="what the run shows (the ok line)")
    ap.add_argument("prompts", nargs="+")
    a = ap.parse_args()
    base = f"http://127.0.0.1:{a.port}"

    def post(prompt):
        body = json.dumps({"prompt": prompt, "max_tokens": a.max_tokens, "temperature": 0}).encode()
        req = urllib.request.Request(base + "/v1/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.load(r)["choices"][0]["text"]

    def metric(name):
        with urllib.request.urlopen(base + "/metrics", timeout=60) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        sys.exit(f"FAIL: /metrics has no {name}")

    cap = a.blocks_capacity
    if cap is not None and metric("augur_kv_blocks_capacity") != cap:
        sys.exit(f"FAIL: pool of {metric('augur_kv_blocks_capacity')} blocks, --kv-blocks asked {cap}")
    alone = [post(p) for p in a.prompts]
    got = [None] * len(a.prompts)
    threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, post(a.prompts[i])))
               for i in range(len(a.prompts))]
    if a.hold:
        open(a.hold, "w").close()
    for t in threads:
        t.start()
    if a.hold:
        deadline = time.monotonic() + 300
        while metric("augur_queue_depth") < len(a.prompts):
            if time.monotonic() > deadline:
                sys.exit(f"FAIL: {metric('augur_queue_depth'):.0f} of {len(a.prompts)} requests queued after 300 s")
            time.sleep(0.05)
        os.unlink(a.hold)
    most = 0
    while cap is not None and any(t.is_alive() for t in threads):
        most = max(most, metric("augur_kv_blocks_used"))
        if most > cap:
            sys.exit(f"FAIL: {most} blocks in use of {cap}")
    for t in threads:
        t.join()
    for i, p in enumerate(a.prompts):
        if got[i] != alone[i]:
            sys.exit(f"FAIL: request {i} ({a.what}) differs from it alone: {got[i]!r} vs {alone[i]!r}")
    if cap is not None and metric("augur_kv_blocks_used") != 0:
        sys.exit("FAIL: pool blocks still in use after every request")
    seen = f" (at most {most:.0f} of {cap} blocks seen in use)" if cap is not None else ""
    print(f"ok: {len(a.prompts)} requests {a.what}: each equals its answer alone{seen}")


if __name__ == "__main__":
    main()
