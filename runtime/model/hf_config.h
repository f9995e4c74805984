/* Hugging Face config.json for the Llama family (llama, mistral, qwen2). */
#ifndef AUGUR_HF_CONFIG_H
#define AUGUR_HF_CONFIG_H

#include "base/model_config.h"

/* Parses a Hugging Face config.json. Unknown model_type, missing or non-positive
 * fields are AUGUR_E_FORMAT / AUGUR_E_UNSUPPORTED errors naming the file and field. */
augur_status model_config_load_hf(model_config *cfg, const char *config_json_path, augur_error *err);

#endif
