/* augur launch's checks of the models against the layout, before any rank starts: the
 * target's heads split over T ranks, the draft shares its vocabulary. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "launcher/launch_models.h"
#include "runtime/model/hf_config.h"
#include "runtime/model/model.h"

/* path's config.json (path is a directory, or the config.json itself); false for a
 * llama2.c checkpoint, whose header the ranks check when they load it. */
static bool config_json_of(const char *path, char *out, size_t cap)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(out, cap, "%s/config.json", path);
        return true;
    }
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".json")) {
        snprintf(out, cap, "%s", path);
        return true;
    }
    return false;
}

static augur_status read_config(const launch_config *c, const char *key, const char *path, bool missing_ok,
                                model_config *cfg, bool *have, augur_error *err)
{
    char json[4096];
    struct stat st;
    *have = false;
    if (stat(path, &st) != 0 && missing_ok) {
        fprintf(stderr, "augur launch: %s: key \"%s\": %s does not exist here; its checks are skipped\n", c->path,
                key, path);
        return AUGUR_OK;
    }
    if (stat(path, &st) != 0)
        return augur_fail(err, AUGUR_E_INPUT, "%s: key \"%s\": %s does not exist", c->path, key, path);
    if (!config_json_of(path, json, sizeof json))
        return AUGUR_OK;
    augur_error inner = {0};
    if (model_config_load_hf(cfg, json, &inner))
        return augur_fail(err, AUGUR_E_INPUT, "%s: key \"%s\": %s", c->path, key, inner.message);
    *have = true;
    return AUGUR_OK;
}

augur_status launch_check_models(const launch_config *c, bool missing_ok, augur_error *err)
{
    const char *target_key = c->command == LAUNCH_BENCH ? "model" : "target";
    model_config target = {0}, draft = {0};
    bool have_target = false, have_draft = false;
    augur_status st = read_config(c, target_key, c->target, missing_ok, &target, &have_target, err);
    if (st)
        return st;
    augur_error inner = {0};
    if (have_target && tp_check_layout(&target, c->tp, &inner))
        return augur_fail(err, AUGUR_E_INPUT, "%s: key \"tp\": %s of %s", c->path, inner.message, c->target);
    if (c->command == LAUNCH_BENCH || c->no_speculation)
        return AUGUR_OK;
    if (c->draft_layers && have_target && c->draft_layers > target.n_layers)
        return augur_fail(err, AUGUR_E_INPUT, "%s: key \"draft-layers\": %d exceeds the target's %d layers (%s)",
                          c->path, c->draft_layers, target.n_layers, c->target);
    if (!c->draft_model)
        return AUGUR_OK;
    if ((st = read_config(c, "draft", c->draft_model, missing_ok, &draft, &have_draft, err)))
        return st;
    if (have_target && have_draft && draft.vocab_size != target.vocab_size)
        return augur_fail(err, AUGUR_E_INPUT,
                          "%s: key \"draft\": the draft %s has a vocabulary of %d tokens, the target %s %d: they must "
                          "share the tokenizer",
                          c->path, c->draft_model, draft.vocab_size, c->target, target.vocab_size);
    return AUGUR_OK;
}
