"""Reading the corpus that tools/corpus/make_corpus.py writes, and the held-out chunks
that the tokenizer check compares (standard library only, so that the developer machine's
/usr/bin/python3 and the GPU machine's python3 share it)."""
import lzma

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"

# Llama 3's pre-tokenizer regex (tokenizer.json of Meta-Llama-3-8B).
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

CHUNK_BYTES = 30000  # a command-line argument must stay under 128 KiB


def read_docs(path):
    """The documents of train.txt.xz / heldout.txt.xz (each one followed by a NUL byte)."""
    with lzma.open(path, "rb") as f:
        data = f.read().decode("utf-8")
    docs = data.split("\0")
    if docs and docs[-1] == "":
        docs.pop()
    return docs


def heldout_chunks(docs):
    """Splits documents into chunks of at most CHUNK_BYTES (UTF-8) at line ends, never
    starting a chunk with '-' (so that a chunk can be a command-line argument after '--'
    too). The tokenizer check encodes each chunk on its own, with no special tokens."""
    out = []
    for doc in docs:
        lines = doc.splitlines(keepends=True)
        cur, size = [], 0
        for line in lines:
            n = len(line.encode("utf-8"))
            if cur and size + n > CHUNK_BYTES and not line.startswith("-"):
                out.append("".join(cur))
                cur, size = [], 0
            cur.append(line)
            size += n
        if cur:
            out.append("".join(cur))
    return out
