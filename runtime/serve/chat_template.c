/* Rendering chat messages with a recognised template (see chat_template.h). */
#include "runtime/serve/chat_template.h"

#include "base/text_buf.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

augur_status chat_template_detect(const char *dir, chat_template_kind *kind, const char **described,
                                  augur_error *err)
{
    *kind = CHAT_TEMPLATE_PLAIN;
    *described = "plain \"role: content\" lines (no chat_template in tokenizer_config.json)";
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return AUGUR_OK;
    fclose(f);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root)
        return augur_fail(err, AUGUR_E_FORMAT, "%s: line %d: %s", path, jerr.line, jerr.text);
    const json_t *t = json_object_get(root, "chat_template");
    const char *text = json_string_value(t);
    if (text && strstr(text, "<|start_header_id|>")) {
        *kind = CHAT_TEMPLATE_LLAMA3;
        *described = "Llama 3 (<|start_header_id|>role<|end_header_id|>)";
    } else if (text && strstr(text, "<|im_start|>")) {
        *kind = CHAT_TEMPLATE_CHATML;
        *described = "ChatML (<|im_start|>role)";
    } else if (t) {
        *described = "plain \"role: content\" lines (chat_template of an unrecognised shape)";
    }
    json_decref(root);
    return AUGUR_OK;
}

/* Llama 3's template trims each message's content. */
static void put_trimmed(text_buf *b, const char *s)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    text_buf_put(b, s, n);
}

char *chat_template_render(chat_template_kind kind, const chat_message *msgs, size_t n, bool *add_special)
{
    text_buf b = {0};
    *add_special = kind != CHAT_TEMPLATE_LLAMA3;
    if (kind == CHAT_TEMPLATE_LLAMA3)
        text_buf_puts(&b, "<|begin_of_text|>");
    for (size_t i = 0; i < n; i++) {
        const char *role = msgs[i].role;
        switch (kind) {
        case CHAT_TEMPLATE_LLAMA3:
            text_buf_puts(&b, "<|start_header_id|>");
            text_buf_puts(&b, role);
            text_buf_puts(&b, "<|end_header_id|>\n\n");
            put_trimmed(&b, msgs[i].content);
            text_buf_puts(&b, "<|eot_id|>");
            break;
        case CHAT_TEMPLATE_CHATML:
            text_buf_puts(&b, "<|im_start|>");
            text_buf_puts(&b, role);
            text_buf_puts(&b, "\n");
            text_buf_puts(&b, msgs[i].content);
            text_buf_puts(&b, "<|im_end|>\n");
            break;
        case CHAT_TEMPLATE_PLAIN:
            text_buf_puts(&b, role);
            text_buf_puts(&b, ": ");
            text_buf_puts(&b, msgs[i].content);
            text_buf_puts(&b, "\n");
            break;
        }
    }
    if (kind == CHAT_TEMPLATE_LLAMA3)
        text_buf_puts(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    else if (kind == CHAT_TEMPLATE_CHATML)
        text_buf_puts(&b, "<|im_start|>assistant\n");
    else
        text_buf_puts(&b, "assistant:");
    return text_buf_take(&b);
}
