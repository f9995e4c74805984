#!/usr/bin/env python3
"""Checks augur's greedy generations against Hugging Face transformers.

Input: a JSON file of cases {"model": DIR, "prompt_ids": [...], "augur_ids": [...]} (the
ids augur generated after the prompt). For each case, transformers loads DIR in float32,
runs greedy generate for len(augur_ids) new tokens from prompt_ids, and the two id lists
are compared. Prints one line per case and exits non-zero on any mismatch.

Run where transformers is installed (the GPU machine), e.g.:
    python3 tools/check_hf_greedy.py cases.json
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM


def main():
    cases = json.load(open(sys.argv[1]))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    models = {}
    bad = 0
    for i, case in enumerate(cases):
        path = case["model"]
        if path not in models:
            models[path] = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32).to(device).eval()
        model = models[path]
        ids = torch.tensor([case["prompt_ids"]], device=device)
        want = case["augur_ids"]
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=len(want), do_sample=False,
                                 attention_mask=torch.ones_like(ids), pad_token_id=0)
        got = out[0, ids.shape[1]:].tolist()
        same = got == want
        first = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), None)
        print(f"case {i}: {path} prompt {len(case['prompt_ids'])} tokens, {len(want)} new: "
              f"{'EQUAL' if same else f'DIFFER at {first}'}")
        if not same:
            print(f"  transformers: {got}\n  augur:        {want}")
            bad += 1
    print(f"{len(cases) - bad} of {len(cases)} cases equal")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
