#include "launcher/model_files.h"

#include "launcher/args.h"

#include <stdio.h>
#include <sys/stat.h>

augur_status resolve_tokenizer_path(const char *model_path, const char *tokenizer_flag, char *out, size_t cap,
                                    augur_error *err)
{
    if (tokenizer_flag) {
        snprintf(out, cap, "%s", tokenizer_flag);
        return AUGUR_OK;
    }
    struct stat st;
    if (stat(model_path, &st) != 0)
        return augur_fail(err, AUGUR_E_INPUT, "%s: no such file or directory", model_path);
    if (!S_ISDIR(st.st_mode))
        return augur_fail(err, AUGUR_E_INPUT,
                          "%s is a llama2.c checkpoint: pass its tokenizer.bin with --tokenizer FILE", model_path);
    snprintf(out, cap, "%s/tokenizer.json", model_path);
    if (stat(out, &st) != 0)
        return augur_fail(err, AUGUR_E_INPUT, "%s: no tokenizer.json (pass one with --tokenizer FILE)", model_path);
    return AUGUR_OK;
}

augur_status open_tokenizer_for(const model *m, const char *tokenizer_flag, tokenizer **out, augur_error *err)
{
    char path[1024];
    augur_status st = resolve_tokenizer_path(m->source, tokenizer_flag, path, sizeof path, err);
    if (st)
        return st;
    if ((st = tokenizer_load(out, path, m->cfg.vocab_size, err)))
        return st;
    int tv = tokenizer_vocab_size(*out);
    if (tv > m->cfg.vocab_size) {
        tokenizer_free(*out);
        *out = NULL;
        return augur_fail(err, AUGUR_E_INPUT, "%s has %d tokens but %s has a vocabulary of %d", path, tv, m->source,
                          m->cfg.vocab_size);
    }
    return AUGUR_OK;
}

void describe_backend(const augur_backend *be, int threads, char *out, size_t cap)
{
    if (be->caps.host_memory) {
        snprintf(out, cap, "%d thread%s", threads, plural((unsigned long long)threads));
        return;
    }
    char name[128];
    backend_device_name((augur_backend *)be, name, sizeof name);
    snprintf(out, cap, "GPU %d, %s", be->device, name);
}
