#!/usr/bin/env python3
"""Hugging Face transformers on the same GPU, as the peer of augur's GPU figures.

No weights can be downloaded on the GPU machine, so the Llama-3-8B shape is built from
tools/gpu/dummy_config.sh's config.json with random bf16 weights on the GPU; the shipped
pair (models/target, models/draft) is loaded as it is. Prints, one line each:

  hf 8b forward: 1 position X ms, 6 positions Y ms (Y/X), context 512, eager
  hf 8b generate: N tokens/s (greedy, batch 1, 128 new tokens after a 512-token prompt)
  hf shipped target-only generate: N tokens/s; speculative (assistant_model=draft): M tokens/s

usage: hf_peer.py --config DIR/config.json --models DIR [--skip-8b]
"""
import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM


def cuda_ms(fn, iters):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def gen_tps(model, ids, new_tokens, **kw):
    model.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False, **kw)  # warm up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, **kw)
    torch.cuda.synchronize()
    return (out.shape[1] - ids.shape[1]) / (time.perf_counter() - t0)


def eight_b(config_path):
    cfg = LlamaConfig(**json.load(open(config_path)))
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    ctx = 512
    ids = torch.randint(0, cfg.vocab_size, (1, ctx), device="cuda")
    with torch.no_grad():
        pre = model(ids, use_cache=True)
        cache = pre.past_key_values

        def step(n):
            new = torch.randint(0, cfg.vocab_size, (1, n), device="cuda")
            def run():
                model(new, past_key_values=cache, use_cache=True)
                cache.crop(ctx)
            return run

        one = cuda_ms(step(1), 20)
        six = cuda_ms(step(6), 20)
        print(f"hf 8b forward: 1 position {one:.3f} ms, 6 positions {six:.3f} ms ({six / one:.2f}x), context {ctx}, eager")
        tps = gen_tps(model, ids, 128)
        print(f"hf 8b generate: {tps:.1f} tokens/s (greedy, batch 1, 128 new tokens after a {ctx}-token prompt)")
    del model, cache
    torch.cuda.empty_cache()


def shipped(models):
    target = AutoModelForCausalLM.from_pretrained(f"{models}/target", torch_dtype=torch.float32).to("cuda").eval()
    draft = AutoModelForCausalLM.from_pretrained(f"{models}/draft", torch_dtype=torch.float32).to("cuda").eval()
    ids = torch.tensor([[1] + list(range(100, 140))], device="cuda")
    with torch.no_grad():
        base = gen_tps(target, ids, 64)
        spec = gen_tps(target, ids, 64, assistant_model=draft)
    print(f"hf shipped target-only generate: {base:.1f} tokens/s; speculative (assistant_model=draft): "
          f"{spec:.1f} tokens/s (greedy, 64 new tokens)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--skip-8b", action="store_true")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    if not a.skip_8b:
        eight_b(a.config)
    shipped(a.models)


if __name__ == "__main__":
    main()
