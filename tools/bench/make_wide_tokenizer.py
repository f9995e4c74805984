#!/usr/bin/env python3
"""Writes a byte-level BPE tokenizer.json whose vocabulary fills a Llama-3-sized model
(128000 ordinary tokens + 256 special ones by default), for serving dummy-weight models
(`augur serve --load-format dummy --tokenizer FILE`): every id a dummy target can emit
decodes to text, so answers can be compared as text. The tokens are made up (all byte
pairs, then byte triples); nothing here is Llama 3's vocabulary.

  python3 tools/bench/make_wide_tokenizer.py OUT/tokenizer.json [--ordinary 128000] [--special 256]
"""
import argparse
import json


def bytes_to_unicode():
    """GPT-2's printable stand-in for each byte, as byte-level BPE writes tokens."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--ordinary", type=int, default=128000)
    ap.add_argument("--special", type=int, default=256)
    a = ap.parse_args()
    alphabet = bytes_to_unicode()
    vocab, merges = {}, []
    for c in alphabet:
        vocab[c] = len(vocab)
    pairs = []
    for x in alphabet:
        for y in alphabet:
            if len(vocab) >= a.ordinary:
                break
            vocab[x + y] = len(vocab)
            merges.append([x, y])
            pairs.append(x + y)
    for p in pairs:
        for z in alphabet:
            if len(vocab) >= a.ordinary:
                break
            vocab[p + z] = len(vocab)
            merges.append([p, z])
    names = {0: "<|begin_of_text|>", 1: "<|end_of_text|>", 9: "<|eot_id|>"}
    added = [{"id": a.ordinary + k, "content": names.get(k, f"<|reserved_special_token_{k}|>"), "single_word": False,
              "lstrip": False, "rstrip": False, "normalized": False, "special": True} for k in range(a.special)]
    bos = added[0]["content"]
    doc = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
                                                   "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
                                                   "\\s+(?!\\S)|\\s+"},
             "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": bos, "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {bos: {"id": bos, "ids": [a.ordinary], "tokens": [bos]}}},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
    print(f"{a.out}: {len(vocab)} ordinary + {a.special} special tokens, {len(merges)} merges")


if __name__ == "__main__":
    main()
