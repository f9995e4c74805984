/* Resolving the files behind --model / --tokenizer, and naming the backend a command ran on. */
#ifndef AUGUR_MODEL_FILES_H
#define AUGUR_MODEL_FILES_H

#include "base/error.h"
#include "kernels/backend.h"
#include "runtime/model/model.h"
#include "runtime/tokenizer/tokenizer.h"

/* The start of --model's help text. */
#define MODEL_PATH_HELP \
    "Hugging Face model directory (config.json, *.safetensors) or\n" \
    "llama2.c checkpoint (.bin)"

/* The tokenizer to use: tokenizer_flag when given, else <model_dir>/tokenizer.json.
 * A llama2.c checkpoint (a file) needs --tokenizer. */
augur_status resolve_tokenizer_path(const char *model_path, const char *tokenizer_flag, char *out, size_t cap,
                                    augur_error *err);

/* Loads the tokenizer for a model and checks its ids fit the model's vocabulary. */
augur_status open_tokenizer_for(const model *m, const char *tokenizer_flag, tokenizer **out, augur_error *err);

/* Where a command ran, for its closing line: "2 threads" on the host, else
 * "GPU 0, NVIDIA H200". */
void describe_backend(const augur_backend *be, int threads, char *out, size_t cap);

#endif
