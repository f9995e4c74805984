#!/usr/bin/env bash
# augur serve on dummy weights with a made-up Llama-3-sized vocabulary
# (tools/bench/make_wide_tokenizer.py) and --synthetic-acceptance, as the GPU serving
# benchmark runs the 8B shape: the load test's every streamed answer equals the same
# request alone (with and without speculation, at 1 and 4 streams); the synthetic
# acceptance is what the usage block reports; a seeded request keys its own coin; the
# flags it needs are refused without their partners.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
make_tmp
A=0.7
for m in target draft; do
  layers=2; [ "$m" = draft ] && layers=1
  mkdir -p "$tmp/$m"
  cat >"$tmp/$m/config.json" <<JSON
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
 "num_hidden_layers": $layers, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 128256,
 "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": false,
 "bos_token_id": 128000, "eos_token_id": [128001, 128009], "torch_dtype": "bfloat16"}
JSON
done
python3 "$AUGUR_SOURCE_DIR/tools/bench/make_wide_tokenizer.py" "$tmp/tokenizer.json"

expect_fail 2 "give --tokenizer FILE" -- "$AUGUR_BIN" serve --target "$tmp/target" --draft "$tmp/draft" --load-format dummy
expect_fail 2 "runs only with --load-format dummy" -- "$AUGUR_BIN" serve --target "$MODELS/target" \
  --draft "$MODELS/draft" --synthetic-acceptance 0.5
expect_fail 2 "--overlap and --no-overlap contradict each other" -- "$AUGUR_BIN" serve --target "$tmp/target" --draft "$tmp/draft" \
  --load-format dummy --tokenizer "$tmp/tokenizer.json" --overlap --no-overlap
expect_fail 2 "needs speculation" -- "$AUGUR_BIN" serve --target "$tmp/target" --load-format dummy \
  --tokenizer "$tmp/tokenizer.json" --synthetic-acceptance 0.5 --no-speculation

SERVE_TARGET="$tmp/target" SERVE_DRAFT="$tmp/draft" serve_start dummy --load-format dummy \
  --tokenizer "$tmp/tokenizer.json" --synthetic-acceptance "$A" --max-context 512
python3 "$AUGUR_SOURCE_DIR/tools/bench/serve_load.py" --port "$port" --prompts "$MODELS/heldout_prompts.txt" \
  --n-prompts 3 --requests 6 --concurrency 1,4 --max-tokens 24 >"$tmp/load.txt" 2>&1 ||
  { kill "$pid" || true; cat "$tmp/load.txt" "$tmp/dummy.err" >&2; fail "load test on dummy weights"; }
cat "$tmp/load.txt"
python3 - "$port" "$A" <<'PYEOF'
import json, sys, urllib.request
port, alpha = sys.argv[1], float(sys.argv[2])
def post(body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=120))
base = {"prompt": "static int", "max_tokens": 48, "temperature": 0}
u = post(base)["usage"]["augur"]
rate = u["accepted_tokens"] / u["proposed_tokens"]
# The coin is seeded, so this figure is fixed for this prompt; the window only says that
# it is the synthetic coin's (a dummy draft and target agree on next to nothing alone).
assert 0.45 <= rate <= 0.9, f"acceptance {rate:.3f} of {u['proposed_tokens']} proposals is not near {alpha}"
print(f"ok: synthetic acceptance {rate:.3f} over {u['proposed_tokens']} proposed tokens (A = {alpha})")
texts = {s: post(dict(base, seed=s))["choices"][0]["text"] for s in (1, 2)}
assert texts[1] == post(dict(base, seed=1))["choices"][0]["text"], "a seeded synthetic request changed on a rerun"
assert texts[1] != texts[2], "seeds 1 and 2 drew the same synthetic coins"
print("ok: a request's seed keys its synthetic coin (seed 1 twice: equal; seeds 1, 2: different)")
PYEOF
kill -TERM "$pid"
wait "$mpirun" || fail "augur serve exited $? after SIGTERM: $(tail -n 20 "$tmp/dummy.err")"
echo "PASS"
