/* Chat prompts: the messages of /v1/chat/completions turned into the text the model
 * was trained on. augur renders templates it recognises in tokenizer_config.json's
 * "chat_template" (no Jinja engine): Llama 3 (<|start_header_id|>) and ChatML
 * (<|im_start|>, Qwen2 and others); a model without a template, or with one of
 * another shape, gets the plain fallback "role: content" lines ending in "assistant:". */
#ifndef AUGUR_CHAT_TEMPLATE_H
#define AUGUR_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"
#include "runtime/serve/openai_api.h"

typedef enum {
    CHAT_TEMPLATE_PLAIN,     /* "system: ...\nuser: ...\nassistant:" */
    CHAT_TEMPLATE_LLAMA3,
    CHAT_TEMPLATE_CHATML,
} chat_template_kind;

/* Reads dir/tokenizer_config.json when present (absent: PLAIN). A template of an
 * unrecognised shape is PLAIN too; *described says which was picked, for the log. */
augur_status chat_template_detect(const char *dir, chat_template_kind *kind, const char **described,
                                  augur_error *err);

/* The prompt text (malloc'ed), and whether the tokenizer should add its special
 * tokens (BOS) itself: false when the template writes them. */
char *chat_template_render(chat_template_kind kind, const chat_message *msgs, size_t n, bool *add_special);

#endif
