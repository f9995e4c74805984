/* llama2.c checkpoint -> Hugging Face Llama directory (config.json + model.safetensors). */
#ifndef AUGUR_CONVERT_LLAMA2C_H
#define AUGUR_CONVERT_LLAMA2C_H

#include "base/error.h"

/* Writes out_dir/config.json and out_dir/model.safetensors (F32). q/k rows are
 * permuted from llama2.c's adjacent-pair RoPE layout to Hugging Face's half-split one,
 * so both implementations compute the same function. */
augur_status convert_llama2c_to_hf(const char *bin_path, const char *out_dir, augur_error *err);

#endif
