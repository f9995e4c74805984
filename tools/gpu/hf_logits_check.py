#!/usr/bin/env python3
"""augur's logits against Hugging Face transformers, position by position.

Builds tiny random models with transformers (llama GQA + llama3 RoPE scaling, llama with
tied embeddings, mistral GQA, qwen2 with attention biases tied and untied), saves each as
bf16 safetensors, runs

    augur logits --model DIR --prompt-ids IDS --device cuda|cpu --out FILE

and compares FILE with transformers' logits of the same checkpoint loaded in float32 (the
bf16 weights are exactly representable; the math is fp32, TF32 off) from one forward over
all positions. Per model and augur device it reports

    max rel  = max|augur - hf| / max|hf|
    mean abs = mean|augur - hf|
    argmax   = positions whose argmax agrees; a disagreement where HF's top-2 gap is below
               the largest error at that position is a near-tie, counted separately.

A model passes when max rel <= --tol (1e-2) on cuda (--cpu-tol, 1e-3, on cpu) and every
argmax disagreement is a near-tie. Exits 1 on any failure, 2 on a setup problem.

usage: hf_logits_check.py --augur PATH/TO/augur [--workdir DIR] [--no-cpu] [--tol X]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
import transformers
from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig, Qwen2Config

N_POSITIONS = 40
SHAPE = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
             num_key_value_heads=2, vocab_size=512, max_position_embeddings=512, rms_norm_eps=1e-5,
             rope_theta=10000.0, bos_token_id=1, eos_token_id=2)
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64}

# name, config class, tied embeddings, llama3 rope, seed
MODELS = [
    ("llama-gqa-llama3rope", LlamaConfig, False, True, 11),
    ("llama-tied", LlamaConfig, True, False, 12),
    ("mistral-gqa", MistralConfig, False, False, 13),
    ("qwen2-bias-tied", Qwen2Config, True, False, 14),
    ("qwen2-bias-untied", Qwen2Config, False, False, 15),
]


class SetupError(Exception):
    pass


def make_config(cls, tied, llama3):
    kw = dict(SHAPE, tie_word_embeddings=tied)
    if cls is MistralConfig:
        kw["sliding_window"] = None
    cfg = cls(**kw)
    cfg.tie_word_embeddings = tied
    if llama3:
        # transformers 5 keeps RoPE settings in rope_parameters, 4.x in rope_scaling
        params = getattr(cfg, "rope_parameters", None)
        if isinstance(params, dict):
            cfg.rope_parameters = dict(LLAMA3_ROPE, rope_theta=params.get("rope_theta", SHAPE["rope_theta"]))
        else:
            cfg.rope_scaling = dict(LLAMA3_ROPE)
    return cfg


def init_weights(model, seed):
    """Weights N(0, 0.05), biases N(0, 0.02) (HF zero-initialises them), norms 1 + N(0, 0.1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                vals = 1.0 + 0.1 * torch.randn(p.shape, generator=gen)
            elif name.endswith(".bias"):
                vals = 0.02 * torch.randn(p.shape, generator=gen)
            else:
                vals = 0.05 * torch.randn(p.shape, generator=gen)
            p.copy_(vals.to(p.dtype))


def rope_type_of(model):
    """The RoPE variant the model computes with: its rotary embedding's, else its config's."""
    rot = getattr(model.model, "rotary_emb", None)
    if getattr(rot, "rope_type", None):
        return rot.rope_type
    for field in ("rope_parameters", "rope_scaling"):
        d = getattr(model.config, field, None)
        if isinstance(d, dict) and (d.get("rope_type") or d.get("type")):
            return d.get("rope_type") or d.get("type")
    return None


def build(name, cls, tied, llama3, seed, out_dir):
    torch.manual_seed(seed)
    cfg = make_config(cls, tied, llama3)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    init_weights(model, seed)
    if tied:
        model.tie_weights()
        if model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
            raise SetupError(f"{name}: lm_head is not tied to embed_tokens")
    if llama3 and rope_type_of(model) != "llama3":
        raise SetupError(f"{name}: transformers {transformers.__version__} did not take the llama3 rope "
                         f"settings (rotary_emb.rope_type = {rope_type_of(model)})")
    if cls is Qwen2Config:
        b = model.model.layers[0].self_attn.q_proj.bias
        if b is None or float(b.abs().max()) == 0.0:
            raise SetupError(f"{name}: q_proj has no non-zero bias")
    model = model.to(torch.bfloat16)
    try:
        model.save_pretrained(out_dir, safe_serialization=True)
    except TypeError:  # transformers versions that always write safetensors
        model.save_pretrained(out_dir)
    # Make the fields augur reads explicit whatever the version's diff-against-defaults wrote.
    path = os.path.join(out_dir, "config.json")
    with open(path) as f:
        conf = json.load(f)
    conf["tie_word_embeddings"] = tied
    for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "vocab_size", "max_position_embeddings", "rms_norm_eps"):
        conf.setdefault(k, SHAPE[k])
    if llama3 and "llama3" not in json.dumps(conf):
        raise SetupError(f"{name}: config.json has no llama3 rope settings: {json.dumps(conf)}")
    with open(path, "w") as f:
        json.dump(conf, f, indent=2)
    if not any(fn.endswith(".safetensors") for fn in os.listdir(out_dir)):
        raise SetupError(f"{name}: save_pretrained wrote no safetensors file")


def hf_logits(model_dir, ids, device):
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32,
                                                     attn_implementation="eager")
    model = model.to(device).eval()
    if next(model.parameters()).dtype != torch.float32:
        raise SetupError(f"{model_dir}: transformers loaded {next(model.parameters()).dtype}, not float32")
    x = torch.tensor([ids], device=device)
    with torch.no_grad():
        out = model(input_ids=x, attention_mask=torch.ones_like(x), use_cache=False)
    logits = out.logits[0].float().cpu()
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return logits


def augur_logits(augur, model_dir, ids, device, out_path, vocab):
    cmd = [augur, "logits", "--model", model_dir, "--prompt-ids", " ".join(map(str, ids)), "--device", device,
           "--out", out_path]
    if device == "cpu":
        cmd += ["--threads", str(min(8, os.cpu_count() or 1))]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        return None, f"exit {r.returncode}: {r.stderr.strip()}"
    with open(out_path, "rb") as f:
        raw = f.read()
    if len(raw) != len(ids) * vocab * 4:
        return None, f"{out_path}: {len(raw)} bytes, expected {len(ids)} x {vocab} x 4"
    if sys.byteorder != "little":
        raise SetupError("this check reads augur's little-endian float32 file on a little-endian host only")
    data = torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(len(ids), vocab).clone()
    return data, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""


def set_ieee_fp32():
    """fp32 matmuls in full precision (torch >= 2.9 has the fp32_precision settings; mixing
    them with the older allow_tf32 flags is deprecated)."""
    if hasattr(torch.backends, "fp32_precision"):
        torch.backends.fp32_precision = "ieee"
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        torch.backends.cudnn.fp32_precision = "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def compare(got, ref):
    got, ref = got.double(), ref.double()
    diff = (got - ref).abs()
    max_rel = float(diff.max() / max(float(ref.abs().max()), 1e-30))
    mean_abs = float(diff.mean())
    am_got, am_ref = got.argmax(dim=1), ref.argmax(dim=1)
    agree = int((am_got == am_ref).sum())
    near_ties = mismatches = 0
    for pos in torch.nonzero(am_got != am_ref).flatten().tolist():
        top2 = torch.topk(ref[pos], 2).values
        gap = float(top2[0] - top2[1])
        if gap <= float(diff[pos].max()):
            near_ties += 1
        else:
            mismatches += 1
    return dict(max_rel=max_rel, mean_abs=mean_abs, agree=agree, near_ties=near_ties, mismatches=mismatches,
                finite=bool(torch.isfinite(got).all()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--augur", required=True, help="path to the augur binary")
    ap.add_argument("--workdir", help="where to write the models (default: a temporary directory)")
    ap.add_argument("--no-cpu", action="store_true", help="skip the augur --device cpu runs")
    ap.add_argument("--tol", type=float, default=1e-2, help="max relative error allowed on cuda")
    ap.add_argument("--cpu-tol", type=float, default=1e-3, help="max relative error allowed on cpu")
    args = ap.parse_args()

    if not torch.cuda.is_available():
        print("SKIP: torch sees no CUDA device")
        return 77
    # The reference is plain fp32: no TF32 in matmuls or convolutions.
    set_ieee_fp32()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"GPU {torch.cuda.get_device_name(0)}")

    tmp = None
    work = args.workdir
    if not work:
        tmp = tempfile.TemporaryDirectory()
        work = tmp.name
    ids = torch.randint(0, SHAPE["vocab_size"], (N_POSITIONS,), generator=torch.Generator().manual_seed(2024)).tolist()
    devices = ["cuda"] if args.no_cpu else ["cuda", "cpu"]
    rows, failures = [], []
    try:
        for name, cls, tied, llama3, seed in MODELS:
            model_dir = os.path.join(work, name)
            build(name, cls, tied, llama3, seed, model_dir)
            ref = hf_logits(model_dir, ids, "cuda")
            got = {}
            for dev in devices:
                out_path = os.path.join(work, f"{name}.{dev}.f32")
                logits, note = augur_logits(args.augur, model_dir, ids, dev, out_path, SHAPE["vocab_size"])
                if logits is None:
                    failures.append(f"{name} ({dev}): augur logits failed: {note}")
                    rows.append((name, dev, None))
                    continue
                got[dev] = logits
                r = compare(logits, ref)
                tol = args.tol if dev == "cuda" else args.cpu_tol
                ok = r["finite"] and r["max_rel"] <= tol and r["mismatches"] == 0
                r["ok"] = ok
                rows.append((name, dev, r))
                if not ok:
                    failures.append(f"{name} ({dev}): max rel {r['max_rel']:.2e} (tol {tol:.0e}), "
                                    f"{r['mismatches']} argmax mismatches beyond near-ties, finite={r['finite']}")
            if "cuda" in got and "cpu" in got:
                r = compare(got["cuda"], got["cpu"])
                r["ok"] = None
                rows.append((name, "cuda-vs-cpu", r))
    except SetupError as e:
        print(f"SETUP ERROR: {e}")
        return 2
    finally:
        if tmp:
            tmp.cleanup()

    print(f"\n{N_POSITIONS} positions, vocab {SHAPE['vocab_size']}; reference: transformers fp32 on cuda\n")
    print(f"{'model':<22} {'augur':<12} {'max rel':>10} {'mean abs':>10} {'argmax':>9} {'near-tie':>9}  result")
    for name, dev, r in rows:
        if r is None:
            print(f"{name:<22} {dev:<12} {'-':>10} {'-':>10} {'-':>9} {'-':>9}  FAIL (no output)")
            continue
        res = "info" if r["ok"] is None else ("ok" if r["ok"] else "FAIL")
        print(f"{name:<22} {dev:<12} {r['max_rel']:>10.2e} {r['mean_abs']:>10.2e} "
              f"{r['agree']:>4}/{N_POSITIONS:<4} {r['near_ties']:>9}  {res}")
    print()
    for f in failures:
        print("FAIL:", f)
    print("PASS" if not failures else f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
