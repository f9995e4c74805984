#!/usr/bin/env python3
"""Trains small tokenizers with the Hugging Face `tokenizers` library and writes
golden encodings for augur's C tokenizer tests (tests/fixtures/tokenizers/).

Why train instead of downloading real ones: the machines that build augur have no
network access to model hubs, and real vocabularies are megabytes. A ~1500-token
vocabulary trained here has exactly the same *structure* (normalizers,
pre-tokenizers, decoders, post-processors, added tokens) as Llama 3, Llama 2 /
Mistral and GPT-2, so the goldens exercise the same code paths.

Usage: python3 tools/tokenizer_goldens.py --out DIR
Writes DIR/<name>/tokenizer.json and DIR/<name>/cases.jsonl for each of:
  byte_level    Llama 3 layout (Split regex + ByteLevel, ignore_merges, BOS template)
  sentencepiece Llama 2 / Mistral layout (Prepend+Replace normalizer, byte_fallback)
  metaspace     same model as sentencepiece, with a Metaspace pre-tokenizer/decoder
  gpt2          GPT-2 layout (ByteLevel with its regex, string-form merges, no BOS)
"""

import argparse
import glob
import json
import os
import random
import sys
import sysconfig
import traceback

from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models,
                        normalizers, pre_tokenizers, processors, trainers)

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

VOCAB_SIZE = 1500
CORPUS_BYTES = 3_000_000

# Lines in other scripts so the vocabularies learn a few non-ASCII merges and the
# byte-level / byte-fallback paths still see characters outside the vocabulary.
MULTILINGUAL = [
    "Привет, мир! Как дела? Это тестовая строка на русском языке.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Le café est très bon à Paris, n'est-ce pas ? Où est la bibliothèque ?",
    "Der schnelle braune Fuchs springt über den faulen Hund. Größe, Straße.",
    "El niño comió una manzana en la mañana. ¿Dónde está el baño?",
    "Ελληνικά: Γειά σου Κόσμε, καλημέρα σε όλους.",
    "日本語のテキストです。東京は日本の首都です。",
    "你好，世界！这是一个中文句子，用于测试分词器。",
    "한국어 문장입니다. 안녕하세요, 세계!",
    "مرحبا بالعالم. هذه جملة باللغة العربية.",
    "שלום עולם, זה משפט בעברית.",
    "नमस्ते दुनिया, यह हिंदी में एक वाक्य है।",
    "Türkçe: Günaydın, nasılsınız? Çok güzel bir gün.",
    "Polski: Zażółć gęślą jaźń. Łódź jest dużym miastem.",
    "Tiếng Việt: Xin chào thế giới, tôi là một câu tiếng Việt.",
]


def stdlib_corpus(limit):
    """Python's standard library sources: text that exists on any machine with
    Python, no download needed. Sorted so every run reads the same files."""
    root = sysconfig.get_paths()["stdlib"]
    files = sorted(glob.glob(os.path.join(root, "**", "*.py"), recursive=True))
    out, total = [], 0
    for path in files:
        # Test suites hold deliberately odd strings; keep the corpus ordinary code.
        if "site-packages" in path or os.sep + "test" in path:
            continue
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (UnicodeDecodeError, OSError):
            continue
        out.append(text)
        total += len(text)
        if total >= limit:
            break
    return out


def corpus_lines(limit):
    lines = []
    for text in stdlib_corpus(limit):
        lines.extend(text.splitlines(keepends=True))
    # Repeat the multilingual lines so their merges reach the vocabulary.
    for _ in range(200):
        lines.extend(line + "\n" for line in MULTILINGUAL)
    return lines


def component_json(kind, obj):
    """Serialises one pipeline component the way tokenizer.json stores it."""
    t = Tokenizer(models.BPE())
    setattr(t, kind, obj)
    return json.loads(t.to_str())[kind]


def finish(d):
    """Reloads the edited JSON with the library (so it is valid and canonical)."""
    tok = Tokenizer.from_str(json.dumps(d, ensure_ascii=False))
    return tok, tok.to_str()


def build_byte_level(lines):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer=trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in
                            ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]])
    tok.add_tokens([AddedToken("<tool_call>", special=False, normalized=False)])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    d = json.loads(tok.to_str())
    d["model"]["ignore_merges"] = True  # as Llama 3 ships it
    return finish(d)


def train_sentencepiece_model(lines):
    """Trains on words split at spaces (as SentencePiece does) and returns the
    model JSON in the Llama 2 id layout: <unk> <s> </s>, <0x00>..<0xFF>, merges."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always",
                                                 split=True)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2, show_progress=False,
                                  special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=200)
    tok.train_from_iterator(lines, trainer=trainer)
    d = json.loads(tok.to_str())
    old = sorted(d["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab = {}
    for name in ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]:
        vocab[name] = len(vocab)
    for name, _ in old:
        if name not in vocab:
            vocab[name] = len(vocab)
    d["model"]["vocab"] = vocab
    d["model"]["byte_fallback"] = True
    d["model"]["fuse_unk"] = True
    d["model"]["unk_token"] = "<unk>"
    for t in d["added_tokens"]:
        t["id"] = vocab[t["content"]]
        t["normalized"] = False
        t["special"] = True
    return d


def template_bos(bos_name, bos_id):
    return processors.TemplateProcessing(single=f"{bos_name} $A",
                                         pair=f"{bos_name} $A {bos_name} $B:1",
                                         special_tokens=[(bos_name, bos_id)])


def build_sentencepiece(base):
    d = json.loads(json.dumps(base))
    d["normalizer"] = component_json("normalizer", normalizers.Sequence([
        normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]))
    d["pre_tokenizer"] = None
    d["decoder"] = component_json("decoder", decoders.Sequence([
        decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
        decoders.Strip(content=" ", left=1, right=0)]))
    d["post_processor"] = component_json("post_processor", template_bos("<s>", 1))
    # A user-added, non-special token, as fine-tunes add (not normalized).
    d["added_tokens"].append({"id": len(d["model"]["vocab"]), "content": "<|im_start|>",
                              "single_word": False, "lstrip": False, "rstrip": False,
                              "normalized": False, "special": False})
    return finish(d)


def build_metaspace(base):
    d = json.loads(json.dumps(base))
    d["normalizer"] = None
    d["pre_tokenizer"] = component_json("pre_tokenizer", pre_tokenizers.Metaspace(
        replacement="\u2581", prepend_scheme="first", split=False))
    d["decoder"] = component_json("decoder", decoders.Metaspace(
        replacement="\u2581", prepend_scheme="first", split=False))
    d["post_processor"] = component_json("post_processor", template_bos("<s>", 1))
    return finish(d)


def build_gpt2(lines):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"])
    tok.train_from_iterator(lines, trainer=trainer)
    # RoBERTa-style <mask> (lstrip) and a single-word token exercise the flags.
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
    tok.add_tokens([AddedToken("[[sw]]", single_word=True, special=False, normalized=False)])
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    d = json.loads(tok.to_str())
    # GPT-2's original tokenizer.json stores merges as "a b" strings; keep that form.
    d["model"]["merges"] = [m if isinstance(m, str) else " ".join(m) for m in d["model"]["merges"]]
    d["model"]["ignore_merges"] = False
    text = json.dumps(d, ensure_ascii=False)
    tok = Tokenizer.from_str(text)
    return tok, text  # keep the string-form merges as written


def make_cases(specials):
    """Deterministic, varied inputs. specials: the added tokens' texts."""
    c = []
    c += ["", " ", "  ", "   ", "\t", "\n", "\r\n", "\r", " \n ", "   \t\t  ", "\n\n\n",
          "\t\t\tindented", "line1\r\nline2\r\n", "a\n\nb", "trailing   ", "trailing\t \n",
          "  leading", "\u00a0nbsp\u00a0", "ideographic\u3000space", "sep\u2028line",
          "mongolian\u180evowel", "zero\u200bwidth", "\ufeffbom", " \u00a0 \t", "x\x0by\x0cz"]
    c += ["hello", " hello", "  hello", "hello ", "Hello, world!", "Hello world\n",
          "The quick brown fox jumps over the lazy dog.",
          "THE QUICK BROWN FOX", "camelCaseIdentifier", "snake_case_identifier",
          "Mixed123Alpha456", "a", "I", "x y z", "e.g. i.e. etc."]
    c += ["don't", "DON'T", "Don't", "it's", "IT'S", "It'S", "I'm", "I'M", "we'll", "WE'LL",
          "you've", "YOU'VE", "they're", "THEY'RE", "she'd", "SHE'D", "'s", "'S", "''", "'",
          "rock'n'roll", "o'clock", "the cat's toy", "James' book", "'quoted'", "it\u2019s"]
    c += ["7" * n for n in (1, 2, 3, 4, 5, 6, 7, 9, 10, 13, 16, 20, 33)]
    c += ["1234567890", "3.14159", "1,000,000", "2024-01-01", "0x1F", "v1.2.3", "42abc",
          "abc42", "12 34 567 8901", "\u0661\u0662\u0663\u0664", "x\u00b2 + y\u00b3", "\u00bd cup",
          "\u2167 Roman", "\u2460\u2461\u2462", "\uff11\uff12\uff13"]
    c += ["!!!", "...", "?!?!", "---", "***", "@#$%^&*()", "<<>>", "\"quoted\"", "\u00abguillemets\u00bb",
          "\u2014 em dash \u2014", "\u2026", "a, b; c: d.", "(parens) [brackets] {braces}",
          "!!!\n\n", " ...\r\n", "~/path/to/file.txt", "user@example.com", "https://example.com/a?b=c&d=e"]
    c += ["def f(x):\n    return x + 1\n", "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}\n",
          "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}", "<div class=\"x\">Hi</div>",
          "SELECT * FROM t WHERE id = 42;", "    if x:\n        pass\n    else:\n        raise",
          "import os, sys\nprint(os.path.join('a', 'b'))", "x = [i**2 for i in range(10)]  # squares",
          "#include <stdio.h>\nint main(void) { return 0; }", "$ ls -la | grep foo > out.txt"]
    c += ["\u4f60\u597d\uff0c\u4e16\u754c", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
          "\ud55c\uad6d\uc5b4 \ubb38\uc7a5", "\u4e2d\u6587 and English mixed",
          "\u9f8d", "\u3042\u3044\u3046\u3048\u304a", "\u5317\u4eac\u5e02\u6d77\u6dc0\u533a"]
    c += ["\U0001F600", "\U0001F44D\U0001F3FD", "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466",
          "\U0001F3F3\ufe0f\u200d\U0001F308", "\U0001F1EB\U0001F1F7\U0001F1E9\U0001F1EA", "\u2764\ufe0f",
          "a\U0001F600b", "emoji at end \U0001F680", "\U0001F600\U0001F600\U0001F600", " \U0001F389 party"]
    c += ["caf\u00e9", "cafe\u0301", "na\u00efve", "\u00c5ngstr\u00f6m", "A\u030angstro\u0308m", "\u00f1and\u00fa",
          "\ufb01 ligature", "\uff46\uff55\uff4c\uff4c\uff57\u0131\uff44\uff54\uff48", "Stra\u00dfe", "\u0130stanbul",
          "\u1e9e capital sharp s", "\u01c5 titlecase"]
    c += ["\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!", "\u0451\u043b\u043a\u0430",
          "\u041c\u043e\u0441\u043a\u0432\u0430 2024", "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
          "\u05e9\u05dc\u05d5\u05dd", "\u0928\u092e\u0938\u094d\u0924\u0947", "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",
          "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5", "\u10d2\u10d0\u10db\u10d0\u10e0\u10ef\u10dd\u10d1\u10d0"]
    c += ["\x00", "a\x00b", "\x7f", "\x1b[31mred\x1b[0m", "\U0001D518\U0001D52B\U0001D526", "\U00010348",
          "\ufffd", "\uffff", "\U0010FFFF"]
    c += ["abcdefghij" * 520, "supercalifragilisticexpialidocious " * 3]
    for s in specials:
        c += [s, s + "hello", "hello" + s, " " + s + " ", s + s, "a " + s + " b",
              s + "\n", s[:-1], s.lower(), "x" + s + "y", " " + s, s + " "]
    # Generated runs, seeded so the set is the same on every run.
    c += [" " * n + "x" for n in (1, 2, 3, 5, 8)]
    c += ["x" + " " * n for n in (1, 2, 4)]
    c += ["a" + "\t" * n + "b" for n in (1, 2, 3)]
    c += ["\n" * n + "x" + "\n" * n for n in (1, 2, 4)]
    c += ["!" * n for n in (1, 2, 5, 9)]
    rng = random.Random(20240601)
    frags = ["the", " cat", "'s", " DON'T", "123", "4567", " ", "  ", "\t", "\n", "\r\n",
             "\u4f60\u597d", "\U0001F600", "caf\u00e9", "e\u0301", "\u041f\u0440\u0438", "!!", "...",
             "(", ")", "x_y", "CamelCase", "  \n", "\u00a0", "\u0645\u0631", "-", "42", "\u00df",
             "\U0001F468\u200d\U0001F469", "\u2581", "\u0120", "<", ">", "|"]
    for _ in range(70):
        c.append("".join(rng.choice(frags) for _ in range(rng.randint(1, 10))))
    seen, out = set(), []
    for s in c:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def write_fixture(outdir, name, tok, json_text, specials):
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(json_text)
    # Encode with the tokenizer exactly as written to disk.
    tok = Tokenizer.from_str(json_text)
    n = 0
    with open(os.path.join(d, "cases.jsonl"), "w", encoding="utf-8") as f:
        for text in make_cases(specials):
            ids = tok.encode(text, add_special_tokens=True).ids
            ids_ns = tok.encode(text, add_special_tokens=False).ids
            rec = {"text": text, "ids": ids, "ids_no_special": ids_ns,
                   "decoded": tok.decode(ids, skip_special_tokens=False),
                   "decoded_skip": tok.decode(ids, skip_special_tokens=True)}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
    print(f"{name}: vocab {tok.get_vocab_size(True)}, {n} cases, {size} bytes", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import tokenizers
    print("tokenizers", tokenizers.__version__, flush=True)
    lines = corpus_lines(CORPUS_BYTES)
    print("corpus lines", len(lines), "chars", sum(map(len, lines)), flush=True)
    failed = 0
    builders = [
        ("byte_level", lambda: build_byte_level(lines),
         ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<tool_call>"]),
        ("gpt2", lambda: build_gpt2(lines), ["<|endoftext|>", "<mask>", "[[sw]]"]),
    ]
    try:
        sp_base = train_sentencepiece_model(lines)
        builders += [
            ("sentencepiece", lambda: build_sentencepiece(sp_base),
             ["<s>", "</s>", "<unk>", "<|im_start|>", "<0x41>"]),
            ("metaspace", lambda: build_metaspace(sp_base), ["<s>", "</s>", "<unk>"]),
        ]
    except Exception:
        traceback.print_exc()
        failed += 1
    for name, build, specials in builders:
        try:
            tok, text = build()
            write_fixture(args.out, name, tok, text, specials)
        except Exception:
            print(f"{name}: FAILED", flush=True)
            traceback.print_exc()
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
