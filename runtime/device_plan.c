#include "runtime/device_plan.h"
#include "runtime/model/hf_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/forward.h"
#include "runtime/kv_cache.h"

/* Room kept free on a GPU beyond the plan: the CUDA context's own allocations, cuBLAS
 * workspaces, NCCL buffers and the split-attention scratch. */
#define DEVICE_RESERVE_BYTES ((size_t)512 << 20)
#define CPU_DEFAULT_CONTEXT 4096

augur_status device_kind_parse(const char *flag, const char *s, augur_device_kind *out, augur_error *err)
{
    if (!strcmp(s, "auto"))
        *out = AUGUR_DEVICE_AUTO;
    else if (!strcmp(s, "cpu"))
        *out = AUGUR_DEVICE_CPU;
    else if (!strcmp(s, "cuda") || !strcmp(s, "gpu"))
        *out = AUGUR_DEVICE_CUDA;
    else
        return augur_fail(err, AUGUR_E_INPUT, "%s: '%s' is not a device (auto, cpu or cuda)", flag, s);
    return AUGUR_OK;
}

augur_status device_kind_default(augur_device_kind *out, augur_error *err)
{
    const char *env = getenv("AUGUR_DEVICE");
    *out = AUGUR_DEVICE_AUTO;
    return env && env[0] ? device_kind_parse("AUGUR_DEVICE", env, out, err) : AUGUR_OK;
}

const char *device_kind_name(augur_device_kind k)
{
    return k == AUGUR_DEVICE_CUDA ? "cuda" : k == AUGUR_DEVICE_CPU ? "cpu" : "auto";
}

augur_device_kind device_kind_resolve(augur_device_kind k)
{
    if (k != AUGUR_DEVICE_AUTO)
        return k;
    return backend_device_count(AUGUR_BACKEND_CUDA) > 0 ? AUGUR_DEVICE_CUDA : AUGUR_DEVICE_CPU;
}

augur_status device_open_backend(augur_backend **be, const device_opts *d, int gpu, augur_error *err)
{
    *be = NULL;
    const augur_backend_opts opts = {.threads = d->threads, .device = gpu};
    if (device_kind_resolve(d->kind) == AUGUR_DEVICE_CPU)
        return backend_create(be, AUGUR_BACKEND_CPU, &opts, err);
    int count = backend_device_count(AUGUR_BACKEND_CUDA);
    if (count == 0)
        return augur_fail(err, AUGUR_E_UNSUPPORTED,
                          "--device cuda: no GPU is visible (CUDA_VISIBLE_DEVICES='%s'%s); use --device cpu",
                          getenv("CUDA_VISIBLE_DEVICES") ? getenv("CUDA_VISIBLE_DEVICES") : "unset",
#ifdef AUGUR_HAVE_CUDA
                          ""
#else
                          ", and augur was built without CUDA"
#endif
        );
    if (gpu < 0 || gpu >= count)
        return augur_fail(err, AUGUR_E_UNSUPPORTED, "--device cuda: GPU %d asked for, %d visible", gpu, count);
    return backend_create(be, AUGUR_BACKEND_CUDA, &opts, err);
}

static bool is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static double gib(size_t bytes)
{
    return (double)bytes / (double)(1ull << 30);
}

/* On a device: the weights must fit in what is free now, with the reserve left over. */
static augur_status check_weights_fit(augur_backend *be, const char *path, size_t weight_bytes, augur_error *err)
{
    if (!be->caps.memory_info)
        return AUGUR_OK;
    const int gpu = be->device;
    size_t free_b = 0, total_b = 0;
    augur_status st = backend_memory_info(be, &free_b, &total_b, err);
    if (st)
        return st;
    if (weight_bytes + DEVICE_RESERVE_BYTES > free_b)
        return augur_fail(err, AUGUR_E_NOMEM,
                          "%s: this rank's weights need %.2f GiB but GPU %d has %.2f GiB free of %.2f GiB "
                          "(plus %.2f GiB kept in reserve): use more tensor-parallel ranks (--tp) or a smaller model",
                          path, gib(weight_bytes), gpu, gib(free_b), gib(total_b), gib(DEVICE_RESERVE_BYTES));
    return AUGUR_OK;
}

augur_status device_load_model(model *m, augur_backend *be, const char *path, const model_load_opts *lo,
                               const device_opts *d, augur_error *err)
{
    model_load_opts defaults = {.tp_rank = 0, .tp_size = 1};
    if (!lo)
        lo = &defaults;
    augur_status st;
    if (d->dummy) {
        char config_path[4096];
        if (is_dir(path))
            snprintf(config_path, sizeof config_path, "%s/config.json", path);
        else
            snprintf(config_path, sizeof config_path, "%s", path);
        model_config cfg;
        if ((st = model_config_load_hf(&cfg, config_path, err)))
            return st;
        if (lo->max_layers > 0 && lo->max_layers < cfg.n_layers)
            cfg.n_layers = lo->max_layers;
        if ((st = check_weights_fit(be, path, model_weight_bytes(&cfg, lo, AUGUR_BF16), err)))
            return st;
        return model_load_dummy(m, path, lo, be, d->dummy_seed, err);
    }
    if ((st = model_load(m, path, lo, err)))
        return st;
    if ((st = check_weights_fit(be, path, model_weight_bytes(&m->cfg, &m->opts, m->w.tok_embedding.dtype), err)) ||
        (st = model_to_backend(m, be, err))) {
        model_free(m);
        return st;
    }
    return AUGUR_OK;
}

augur_status device_plan_memory(const model *m, augur_backend *be, const device_opts *d, int requested,
                                int model_limit, int max_tokens, memory_plan *plan, augur_error *err)
{
    const model_config *c = &m->cfg;
    const int gpu = be->device;
    int limit = c->max_seq_len;
    if (model_limit > 0 && model_limit < limit)
        limit = model_limit;
    *plan = (memory_plan){
        .backend = be->name,
        .gpu = gpu,
        .weight_bytes = model_weight_bytes(c, &m->opts, m->w.tok_embedding.dtype),
        .kv_bytes_per_position = kv_cache_bytes(c->n_layers, 1, m->n_kv_heads_local, c->head_dim),
        .workspace_bytes = forward_workspace_bytes(m, max_tokens),
        .context_fit = limit,
    };
    if (requested > limit)
        return augur_fail(err, AUGUR_E_INPUT, "--max-context %d exceeds %s's max_position_embeddings %d", requested,
                          m->source, limit);
    if (!be->caps.memory_info) { /* no device memory to plan (the CPU) */
        plan->context = requested ? requested : (limit < CPU_DEFAULT_CONTEXT ? limit : CPU_DEFAULT_CONTEXT);
        return AUGUR_OK;
    }
    backend_device_name(be, plan->device_name, sizeof plan->device_name);
    augur_status st = backend_memory_info(be, &plan->free_bytes, &plan->total_bytes, err);
    if (st)
        return st;
    double fraction = d->mem_fraction > 0 && d->mem_fraction <= 1 ? d->mem_fraction : 0.9;
    size_t usable = (size_t)((double)plan->free_bytes * fraction);
    size_t fixed = plan->workspace_bytes + DEVICE_RESERVE_BYTES;
    plan->budget_bytes = usable > fixed ? usable - fixed : 0;
    size_t fit = plan->budget_bytes / plan->kv_bytes_per_position;
    plan->context_fit = fit < (size_t)limit ? (int)fit : limit;
    int want = requested ? requested : limit;
    if (plan->context_fit < want) {
        if (requested || plan->context_fit < max_tokens)
            return augur_fail(err, AUGUR_E_NOMEM,
                              "%s on GPU %d: a KV cache of %d positions needs %.2f GiB, but after %.2f GiB of weights "
                              "%.2f GiB is free and %.2f GiB of it may hold the cache (%d positions); lower "
                              "--max-context or use more tensor-parallel ranks",
                              m->source, gpu, want, gib((size_t)want * plan->kv_bytes_per_position),
                              gib(plan->weight_bytes), gib(plan->free_bytes), gib(plan->budget_bytes),
                              plan->context_fit);
        want = plan->context_fit;
    }
    plan->context = want;
    return AUGUR_OK;
}

int memory_plan_pool_blocks(const memory_plan *p, const model *m, int positions)
{
    int want = kv_blocks_for(positions > 0 ? positions : p->context);
    int one = kv_blocks_for(p->context);
    if (!p->budget_bytes)
        return want;
    size_t per_block = kv_pool_bytes(m->cfg.n_layers, 1, m->n_kv_heads_local, m->cfg.head_dim);
    size_t fit = p->budget_bytes / per_block;
    if (fit > (size_t)want)
        fit = (size_t)want;
    return (int)fit > one ? (int)fit : one;
}

void memory_plan_print(FILE *out, const char *who, const memory_plan *p)
{
    if (p->gpu < 0) {
        fprintf(out, "augur: %s: cpu, weights %.1f MiB, KV cache %d positions (%.1f MiB), workspace %.1f MiB\n", who,
                (double)p->weight_bytes / (1 << 20), p->context,
                (double)p->context * p->kv_bytes_per_position / (1 << 20), (double)p->workspace_bytes / (1 << 20));
        return;
    }
    fprintf(out,
            "augur: %s: GPU %d (%s), weights %.2f GiB, KV cache %d positions (%.2f GiB, fits %d), workspace "
            "%.1f MiB, %.2f of %.2f GiB free after weights\n",
            who, p->gpu, p->device_name, gib(p->weight_bytes), p->context,
            gib((size_t)p->context * p->kv_bytes_per_position), p->context_fit, (double)p->workspace_bytes / (1 << 20), gib(p->free_bytes), gib(p->total_bytes));
}
