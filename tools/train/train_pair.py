#!/usr/bin/env python3
"""Trains augur's own draft/target pair: tokenizer -> target -> draft -> export -> checks.

Runs on the GPU machine (PyTorch, transformers, tokenizers); reads the corpus that
tools/corpus/make_corpus.py wrote (default .carry/corpus/). Every hyper-parameter is in
HP below and is written to OUT/metrics.json; every random choice is seeded, so a rerun on
the same software gives the same tokenizer and, up to GPU non-determinism in bf16
kernels, the same models.

Stages
  1. tokenizer  byte-level BPE (Hugging Face `tokenizers`), Llama 3 pre-tokenizer regex,
                <|begin_of_text|> (id 0) and <|end_of_text|> (id 1), BOS added by the
                post-processor as in Llama 3; trained on the whole training split.
  2. encode     every document becomes BOS + tokens + EOS; documents are concatenated.
  3. target     LlamaForCausalLM trained from scratch on random windows (bf16 autocast).
  4. drafts     two drafts of the same shape: 'ce' trained on the data alone, 'kd' distilled
                on the target's next-token distributions (forward KL(target || draft));
                the one with the higher held-out acceptance proxy is exported as the draft.
  5. eval       train and held-out loss, held-out perplexity and bits per byte; acceptance
                proxies on held-out text (teacher forced: greedy agreement and the expected
                acceptance sum_x min(p, q) at temperatures 1 and 0.8).
  6. export     save_pretrained in bfloat16, safetensors shards <= 15 MB with an index,
                tokenizer.json (+ tokenizer_config.json) in both directories.
  7. checks     transformers reloads both in float32 on the CPU and greedily generates 64
                tokens for the first ten held-out prompts (hf_greedy.json, compared with
                augur by tools/train/check_augur.py); held-out text encoded by `tokenizers`
                for augur's tokenizer check (tok_goldens.json.xz).

Usage: python3 tools/train/train_pair.py --out DIR [--corpus .carry/corpus] [--smoke]
"""
import argparse
import glob
import json
import lzma
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpus_io import BOS, EOS, LLAMA3_PATTERN, heldout_chunks, read_docs  # noqa: E402

HP = {
    "seed": 1234,
    "tokenizer": {"vocab_size": 8192, "min_frequency": 2},
    "context": 1024,
    "target": {"hidden_size": 384, "intermediate_size": 1024, "num_hidden_layers": 8,
               "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 64},
    "draft": {"hidden_size": 192, "intermediate_size": 512, "num_hidden_layers": 3,
              "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 48},
    "common_model": {"rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                     "tie_word_embeddings": True, "hidden_act": "silu",
                     "initializer_range": 0.02},
    "train_target": {"batch": 64, "steps": 2200, "lr": 2e-3, "min_lr_ratio": 0.1,
                     "warmup": 150, "weight_decay": 0.1, "betas": [0.9, 0.95],
                     "grad_clip": 1.0},
    "train_draft": {"batch": 64, "steps": 1200, "lr": 3e-3, "min_lr_ratio": 0.1,
                    "warmup": 100, "weight_decay": 0.1, "betas": [0.9, 0.95],
                    "grad_clip": 1.0, "kd_temperature": 1.0},
    "eval": {"windows": 400, "batch": 32},
    "export": {"dtype": "bfloat16", "max_shard_size": "15MB"},
    "checks": {"greedy_prompts": 10, "greedy_tokens": 64},
}

SMOKE = {"target_steps": 60, "draft_steps": 60, "eval_windows": 32}

T0 = time.time()


def log(*a):
    print(f"[{time.time() - T0:7.1f}s]", *a, flush=True)


# ---------------------------------------------------------------- tokenizer

def train_tokenizer(docs, path):
    from tokenizers import (Regex, Tokenizer, decoders, models, pre_tokenizers,
                            processors, trainers)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=HP["tokenizer"]["vocab_size"],
                                  min_frequency=HP["tokenizer"]["min_frequency"],
                                  show_progress=False, special_tokens=[BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(docs, trainer=trainer)
    bos = tok.token_to_id(BOS)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B:1",
                                      special_tokens=[(BOS, bos)]),
    ])
    d = json.loads(tok.to_str())
    d["model"]["ignore_merges"] = True  # as Llama 3 ships it
    tok = Tokenizer.from_str(json.dumps(d))
    tok.save(path)
    return Tokenizer.from_file(path)


def encode_stream(tok, docs, bos_id, eos_id):
    parts = []
    for i in range(0, len(docs), 256):
        for enc in tok.encode_batch(docs[i:i + 256], add_special_tokens=False):
            parts.append(np.asarray([bos_id] + enc.ids + [eos_id], dtype=np.int32))
    return np.concatenate(parts)


# ---------------------------------------------------------------- models

def make_config(kind, vocab, bos_id, eos_id):
    from transformers import LlamaConfig
    c = dict(HP[kind])
    cm = HP["common_model"]
    kw = dict(vocab_size=vocab, max_position_embeddings=HP["context"],
              rms_norm_eps=cm["rms_norm_eps"], tie_word_embeddings=cm["tie_word_embeddings"],
              hidden_act=cm["hidden_act"], initializer_range=cm["initializer_range"],
              attention_bias=False, mlp_bias=False, bos_token_id=bos_id,
              eos_token_id=eos_id, pad_token_id=eos_id, use_cache=True, **c)
    try:  # transformers 5
        cfg = LlamaConfig(rope_parameters={"rope_type": "default",
                                           "rope_theta": cm["rope_theta"]}, **kw)
    except TypeError:  # transformers 4
        cfg = LlamaConfig(rope_theta=cm["rope_theta"], **kw)
    return cfg


def make_model(kind, vocab, bos_id, eos_id, seed):
    from transformers import LlamaForCausalLM
    torch.manual_seed(seed)
    model = LlamaForCausalLM(make_config(kind, vocab, bos_id, eos_id))
    log(f"{kind} config: {model.config.to_json_string(use_diff=False)}")
    log(f"{kind} attention: {getattr(model.config, '_attn_implementation', None)}")
    return model.cuda()


def n_params(model):
    return sum(p.numel() for p in model.parameters())  # tied weights counted once


def lr_at(step, cfg, steps):
    if step < cfg["warmup"]:
        return cfg["lr"] * (step + 1) / cfg["warmup"]
    t = (step - cfg["warmup"]) / max(1, steps - cfg["warmup"])
    lo = cfg["lr"] * cfg["min_lr_ratio"]
    return lo + 0.5 * (cfg["lr"] - lo) * (1 + math.cos(math.pi * min(1.0, t)))


def make_opt(model, cfg):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                              {"params": other, "weight_decay": 0.0}],
                             lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=1e-8, fused=True)


class Windows:
    """Random windows of context+1 tokens from a token stream on the GPU (seeded)."""

    def __init__(self, stream, seq, seed):
        self.stream = stream
        self.seq = seq
        self.gen = torch.Generator(device="cuda")
        self.gen.manual_seed(seed)
        self.ar = torch.arange(seq + 1, device="cuda")

    def batch(self, b):
        n = self.stream.numel() - self.seq - 1
        idx = torch.randint(0, n, (b,), generator=self.gen, device="cuda")
        w = self.stream[idx[:, None] + self.ar[None, :]]
        return w[:, :-1], w[:, 1:]


def logits_of(model, x):
    with torch.autocast("cuda", dtype=torch.bfloat16):
        return model(input_ids=x, use_cache=False).logits


def train(model, cfg, steps, windows, name, teacher=None):
    opt = make_opt(model, cfg)
    model.train()
    V = model.config.vocab_size
    hist = []
    run = None
    t_start = time.time()
    tokens = 0
    for step in range(steps):
        lr = lr_at(step, cfg, steps)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = windows.batch(cfg["batch"])
        logits = logits_of(model, x).float()
        logq = F.log_softmax(logits, dim=-1)
        ce = F.nll_loss(logq.view(-1, V), y.reshape(-1))
        if teacher is not None:
            with torch.no_grad():
                tl = logits_of(teacher, x).float() / cfg["kd_temperature"]
                logp = F.log_softmax(tl, dim=-1)
            if cfg["kd_temperature"] != 1.0:
                logq = F.log_softmax(logits / cfg["kd_temperature"], dim=-1)
            loss = (logp.exp() * (logp - logq)).sum(-1).mean()
        else:
            loss = ce
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += x.numel()
        if step % 50 == 0 or step == steps - 1:
            c = ce.item()
            run = c if run is None else 0.9 * run + 0.1 * c
            el = time.time() - t_start
            hist.append({"step": step, "ce": round(c, 4), "loss": round(loss.item(), 4),
                         "lr": lr, "tokens": tokens, "seconds": round(el, 1)})
            if step % 200 == 0 or step == steps - 1:
                log(f"{name} step {step}/{steps} ce {c:.4f} loss {loss.item():.4f} "
                    f"lr {lr:.2e} {tokens / max(el, 1e-9) / 1e3:.0f}k tok/s")
    model.eval()
    return {"steps": steps, "tokens": tokens, "seconds": round(time.time() - t_start, 1),
            "final_ce_running": round(run, 4), "history": hist}


@torch.no_grad()
def eval_windows(stream, seq, max_windows):
    n = min(max_windows, (stream.numel() - 1) // seq)
    starts = torch.arange(n, device="cuda") * seq
    return stream[starts[:, None] + torch.arange(seq + 1, device="cuda")[None, :]]


@torch.no_grad()
def eval_loss(model, wins, bs):
    V = model.config.vocab_size
    tot, cnt = 0.0, 0
    for i in range(0, wins.shape[0], bs):
        w = wins[i:i + bs]
        lg = logits_of(model, w[:, :-1]).float()
        tot += F.cross_entropy(lg.view(-1, V), w[:, 1:].reshape(-1), reduction="sum").item()
        cnt += w[:, 1:].numel()
    return tot / cnt, tot, cnt


@torch.no_grad()
def acceptance_proxy(target, draft, wins, bs):
    """Teacher-forced on held-out windows: how often the draft's argmax equals the
    target's, and E[sum_x min(p(x), q(x))] (the chance that one sampled draft token is
    accepted) at temperatures 1 and 0.8; plus draft entropy histograms for the greedy
    case (agree vs disagree)."""
    agree = 0
    cnt = 0
    mins = {1.0: 0.0, 0.8: 0.0}
    edges = torch.linspace(0, 8, 33, device="cuda")
    h_ok = torch.zeros(32, device="cuda")
    h_bad = torch.zeros(32, device="cuda")
    for i in range(0, wins.shape[0], bs):
        x = wins[i:i + bs, :-1]
        lp = logits_of(target, x).float()
        lq = logits_of(draft, x).float()
        ok = lp.argmax(-1) == lq.argmax(-1)
        agree += ok.sum().item()
        cnt += ok.numel()
        for T in mins:
            p = F.softmax(lp / T, -1)
            q = F.softmax(lq / T, -1)
            mins[T] += torch.minimum(p, q).sum(-1).sum().item()
        q = F.log_softmax(lq, -1)
        ent = -(q.exp() * q).sum(-1)
        b = torch.bucketize(ent.clamp(0, 7.999), edges[1:-1])
        h_ok += torch.bincount(b[ok], minlength=32).float()
        h_bad += torch.bincount(b[~ok], minlength=32).float()
    return {"greedy_agreement": agree / cnt,
            "expected_accept_T1.0": mins[1.0] / cnt, "expected_accept_T0.8": mins[0.8] / cnt,
            "positions": cnt, "entropy_bin_edges": edges.tolist(),
            "entropy_hist_agree": h_ok.tolist(), "entropy_hist_disagree": h_bad.tolist()}


# ---------------------------------------------------------------- export

def export(model, tok_path, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    m = model.to(torch.bfloat16).cpu()
    m.save_pretrained(out_dir, max_shard_size=HP["export"]["max_shard_size"])
    big = [f for f in glob.glob(os.path.join(out_dir, "*.safetensors"))
           if os.path.getsize(f) > 15_000_000]
    if big:
        raise SystemExit(f"export: shards over 15 MB: {big}")
    try:
        from transformers import PreTrainedTokenizerFast
        fast = PreTrainedTokenizerFast(tokenizer_file=tok_path, bos_token=BOS, eos_token=EOS,
                                       pad_token=EOS, model_max_length=HP["context"])
        fast.save_pretrained(out_dir)
    except Exception as e:  # the tokenizer.json below is what matters
        log(f"export: tokenizer_config not written: {e!r}")
    shutil.copyfile(tok_path, os.path.join(out_dir, "tokenizer.json"))
    for f in sorted(os.listdir(out_dir)):
        log(f"  {out_dir}/{f}: {os.path.getsize(os.path.join(out_dir, f))} bytes")


def load_fp32(path):
    from transformers import AutoModelForCausalLM
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    except TypeError:
        return AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()


def hf_checks(out, dirs, tok_path, prompts, heldout_docs):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tok_path)
    res = {"prompts": [], "models": {}}
    n = HP["checks"]["greedy_prompts"]
    ids = [tok.encode(p).ids for p in prompts[:n]]
    try:
        from transformers import AutoTokenizer
        at = AutoTokenizer.from_pretrained(dirs["target"])
        same = all(at(p)["input_ids"] == i for p, i in zip(prompts[:n], ids))
        res["autotokenizer_matches_tokenizers"] = same
        log(f"AutoTokenizer ids equal tokenizers ids on the prompts: {same}")
    except Exception as e:
        res["autotokenizer_error"] = repr(e)
        log(f"AutoTokenizer failed: {e!r}")
    torch.set_num_threads(min(16, os.cpu_count() or 1))
    for name, d in dirs.items():
        model = load_fp32(d)
        from safetensors import safe_open
        names = []
        for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
            with safe_open(f, "pt") as st:
                names += list(st.keys())
        tied = "lm_head.weight" not in names
        log(f"{name}: {len(names)} tensors, lm_head.weight absent (tied): {tied}")
        gens = []
        for p, pi in zip(prompts[:n], ids):
            x = torch.tensor([pi])
            with torch.no_grad():
                o = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                                   max_new_tokens=HP["checks"]["greedy_tokens"],
                                   pad_token_id=model.config.eos_token_id)
            g = o[0, x.shape[1]:].tolist()
            gens.append(g)
        res["models"][name] = {"dir": d, "ids": gens, "lm_head_absent_in_index": tied,
                               "params": n_params(model)}
        for p, g in list(zip(prompts, gens))[:3]:
            log(f"{name} greedy | {p!r} -> {tok.decode(g)!r}")
        del model
    res["prompts"] = [{"text": p, "ids": i} for p, i in zip(prompts[:n], ids)]
    json.dump(res, open(os.path.join(out, "hf_greedy.json"), "w"))
    chunks = heldout_chunks(heldout_docs)
    encs = tok.encode_batch(chunks, add_special_tokens=False)
    with lzma.open(os.path.join(out, "tok_goldens.json.xz"), "wt") as f:
        json.dump([e.ids for e in encs], f)
    log(f"tokenizer goldens: {len(chunks)} held-out chunks, "
        f"{sum(len(e.ids) for e in encs)} tokens")


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=".carry/corpus")
    ap.add_argument("--out", required=True)
    ap.add_argument("--smoke", action="store_true", help="tiny run to test the pipeline")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    metrics = {"hp": HP, "smoke": args.smoke, "versions": {}}
    import tokenizers
    import transformers
    metrics["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                           "tokenizers": tokenizers.__version__,
                           "gpu": torch.cuda.get_device_name(0)}
    log("versions", metrics["versions"])

    train_docs = read_docs(os.path.join(args.corpus, "train.txt.xz"))
    held_docs = read_docs(os.path.join(args.corpus, "heldout.txt.xz"))
    prompts = [l for l in open(os.path.join(args.corpus, "prompts.txt"),
                               encoding="utf-8").read().split("\n") if l]
    if args.smoke:
        HP["train_target"]["steps"] = SMOKE["target_steps"]
        HP["train_draft"]["steps"] = SMOKE["draft_steps"]
        HP["eval"]["windows"] = SMOKE["eval_windows"]
    log(f"corpus: {len(train_docs)} train docs, {len(held_docs)} held-out docs, "
        f"{len(prompts)} prompts")

    tok_path = os.path.join(args.out, "tokenizer.json")
    tok = train_tokenizer(train_docs, tok_path)
    V = tok.get_vocab_size()
    bos_id, eos_id = tok.token_to_id(BOS), tok.token_to_id(EOS)
    log(f"tokenizer: vocab {V}, BOS {bos_id}, EOS {eos_id}")
    train_np = encode_stream(tok, train_docs, bos_id, eos_id)
    held_np = encode_stream(tok, held_docs, bos_id, eos_id)
    held_bytes = sum(len(d.encode("utf-8")) for d in held_docs)
    train_bytes = sum(len(d.encode("utf-8")) for d in train_docs)
    metrics["corpus"] = {"train_docs": len(train_docs), "heldout_docs": len(held_docs),
                         "train_bytes": train_bytes, "heldout_bytes": held_bytes,
                         "train_tokens": int(train_np.size), "heldout_tokens": int(held_np.size),
                         "train_bytes_per_token": train_bytes / train_np.size}
    log("corpus tokens", metrics["corpus"])
    train_t = torch.from_numpy(train_np.astype(np.int64)).cuda()
    held_t = torch.from_numpy(held_np.astype(np.int64)).cuda()
    seq = HP["context"]

    held_w = eval_windows(held_t, seq, HP["eval"]["windows"])
    g = torch.Generator(device="cuda")
    g.manual_seed(HP["seed"] + 99)
    tidx = torch.randint(0, train_t.numel() - seq - 1, (held_w.shape[0],), generator=g,
                         device="cuda")
    train_w = train_t[tidx[:, None] + torch.arange(seq + 1, device="cuda")[None, :]]

    def evaluate(model):
        hl, htot, hcnt = eval_loss(model, held_w, HP["eval"]["batch"])
        tl, _, _ = eval_loss(model, train_w, HP["eval"]["batch"])
        # bits per byte over the held-out windows' text, approximated by scaling the
        # whole held-out split's bytes by the fraction of its tokens evaluated
        frac = hcnt / max(1, held_t.numel() - 1)
        return {"train_loss": tl, "heldout_loss": hl, "heldout_ppl": math.exp(hl),
                "heldout_tokens_evaluated": hcnt,
                "heldout_bits_per_byte": htot / math.log(2) / (held_bytes * frac)}

    # target
    target = make_model("target", V, bos_id, eos_id, HP["seed"])
    metrics["target"] = {"params": n_params(target)}
    log(f"target params {metrics['target']['params']}")
    metrics["target"]["train"] = train(target, HP["train_target"], HP["train_target"]["steps"],
                                       Windows(train_t, seq, HP["seed"] + 1), "target")
    metrics["target"]["eval"] = evaluate(target)
    log("target eval", metrics["target"]["eval"])
    target.requires_grad_(False)

    drafts = {}
    for variant in ("kd", "ce"):
        d = make_model("draft", V, bos_id, eos_id, HP["seed"] + 2)
        m = {"params": n_params(d), "variant": variant}
        m["train"] = train(d, HP["train_draft"], HP["train_draft"]["steps"],
                           Windows(train_t, seq, HP["seed"] + 3), f"draft-{variant}",
                           teacher=target if variant == "kd" else None)
        m["eval"] = evaluate(d)
        m["acceptance_proxy"] = acceptance_proxy(target, d, held_w, HP["eval"]["batch"])
        log(f"draft-{variant} eval", m["eval"])
        log(f"draft-{variant} proxy", {k: v for k, v in m["acceptance_proxy"].items()
                                       if not k.startswith("entropy")})
        metrics[f"draft_{variant}"] = m
        drafts[variant] = d
    best = max(drafts, key=lambda v: metrics[f"draft_{v}"]["acceptance_proxy"]
               ["expected_accept_T0.8"] + metrics[f"draft_{v}"]["acceptance_proxy"]
               ["greedy_agreement"])
    metrics["draft_exported"] = best
    log(f"exporting draft variant {best}")

    dirs = {"target": os.path.join(args.out, "models", "target"),
            "draft": os.path.join(args.out, "models", "draft")}
    export(target, tok_path, dirs["target"])
    export(drafts[best], tok_path, dirs["draft"])
    json.dump(metrics, open(os.path.join(args.out, "metrics.json"), "w"), indent=1)
    hf_checks(args.out, dirs, tok_path, prompts, held_docs)
    metrics["elapsed_s"] = round(time.time() - T0, 1)
    json.dump(metrics, open(os.path.join(args.out, "metrics.json"), "w"), indent=1)
    log("done")


if __name__ == "__main__":
    main()
