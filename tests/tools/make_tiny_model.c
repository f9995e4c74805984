/* Writes a tiny Hugging Face Llama (or Qwen2) directory with random weights, for tests
 * that need models of shapes no fixture has (T above the KV heads, tiny vocabularies).
 *
 * usage: augur_make_tiny_model --out DIR [--dim N] [--hidden N] [--layers N] [--heads N]
 *            [--kv-heads N] [--vocab N] [--seed S] [--scale X] [--dtype f32|bf16|f16]
 *            [--qwen2] [--mistral] [--tie] [--rope-llama3] */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/model/safetensors.h"

typedef struct {
    int dim, hidden, layers, heads, kv_heads, vocab;
    unsigned long long seed;
    double scale;
    augur_dtype dtype;
    bool qwen2, tie, rope_llama3, mistral;
} tiny_spec;

static double next_uniform(unsigned long long *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (double)(*s >> 11) * 0x1.0p-53;
}

/* Uniform in ±scale·sqrt(3/cols): unit-variance outputs for unit-variance inputs, times scale. */
static int add_random(safetensors_writer *w, const tiny_spec *t, unsigned long long *rng, const char *name,
                      int64_t rows, int64_t cols, bool ones_plus_noise)
{
    int64_t n = rows * (cols ? cols : 1);
    size_t esz = augur_dtype_size(t->dtype);
    unsigned char *buf = malloc((size_t)n * esz);
    if (!buf)
        return -1;
    double amp = t->scale * sqrt(3.0 / (double)(cols ? cols : rows));
    for (int64_t i = 0; i < n; i++) {
        float v = ones_plus_noise ? (float)(1.0 + 0.2 * (2 * next_uniform(rng) - 1))
                                  : (float)(amp * (2 * next_uniform(rng) - 1));
        if (t->dtype == AUGUR_F32)
            memcpy(buf + i * 4, &v, 4);
        else {
            uint16_t h = t->dtype == AUGUR_BF16 ? augur_f32_to_bf16(v) : augur_f32_to_f16(v);
            memcpy(buf + i * 2, &h, 2);
        }
    }
    int64_t shape[2] = {rows, cols};
    augur_error err = {0};
    int rc = safetensors_writer_add(w, name, t->dtype, cols ? 2 : 1, shape, buf, &err) ? -1 : 0;
    free(buf);
    return rc;
}

static int write_model(const tiny_spec *t, const char *dir)
{
    if (mkdir(dir, 0755) != 0 && access(dir, W_OK) != 0)
        return -1;
    int hd = t->dim / t->heads;
    unsigned long long rng = t->seed * 0x9e3779b97f4a7c15ull + 12345;
    safetensors_writer *w = safetensors_writer_new();
    char name[128];
    int rc = add_random(w, t, &rng, "model.embed_tokens.weight", t->vocab, t->dim, false);
    for (int l = 0; !rc && l < t->layers; l++) {
        struct {
            const char *suffix;
            int64_t rows, cols;
            bool norm;
        } parts[] = {
            {"input_layernorm.weight", t->dim, 0, true},
            {"self_attn.q_proj.weight", (int64_t)t->heads * hd, t->dim, false},
            {"self_attn.k_proj.weight", (int64_t)t->kv_heads * hd, t->dim, false},
            {"self_attn.v_proj.weight", (int64_t)t->kv_heads * hd, t->dim, false},
            {"self_attn.o_proj.weight", t->dim, (int64_t)t->heads * hd, false},
            {"post_attention_layernorm.weight", t->dim, 0, true},
            {"mlp.gate_proj.weight", t->hidden, t->dim, false},
            {"mlp.up_proj.weight", t->hidden, t->dim, false},
            {"mlp.down_proj.weight", t->dim, t->hidden, false},
            {"self_attn.q_proj.bias", (int64_t)t->heads * hd, 0, false},
            {"self_attn.k_proj.bias", (int64_t)t->kv_heads * hd, 0, false},
            {"self_attn.v_proj.bias", (int64_t)t->kv_heads * hd, 0, false},
        };
        int n_parts = t->qwen2 ? 12 : 9;
        for (int p = 0; !rc && p < n_parts; p++) {
            snprintf(name, sizeof name, "model.layers.%d.%s", l, parts[p].suffix);
            rc = add_random(w, t, &rng, name, parts[p].rows, parts[p].cols, parts[p].norm);
        }
    }
    if (!rc)
        rc = add_random(w, t, &rng, "model.norm.weight", t->dim, 0, true);
    if (!rc && !t->tie)
        rc = add_random(w, t, &rng, "lm_head.weight", t->vocab, t->dim, false);
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    augur_error err = {0};
    if (!rc && safetensors_writer_save(w, path, &err)) {
        fprintf(stderr, "make_tiny_model: %s\n", err.message);
        rc = -1;
    }
    safetensors_writer_free(w);
    if (rc)
        return rc;
    const char *type = t->qwen2 ? "qwen2" : t->mistral ? "mistral" : "llama";
    json_t *cfg = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:i, s:i}", "model_type",
                            type, "hidden_size", t->dim, "intermediate_size", t->hidden,
                            "num_hidden_layers", t->layers, "num_attention_heads", t->heads, "num_key_value_heads",
                            t->kv_heads, "vocab_size", t->vocab, "max_position_embeddings", 512, "rms_norm_eps",
                            1e-5, "rope_theta", 10000.0, "tie_word_embeddings", t->tie, "bos_token_id", 1,
                            "eos_token_id", t->vocab - 1);
    if (t->rope_llama3) /* original context 64 puts head_dim-8 frequencies in all three bands */
        json_object_set_new(cfg, "rope_scaling",
                            json_pack("{s:s, s:f, s:f, s:f, s:i}", "rope_type", "llama3", "factor", 8.0,
                                      "low_freq_factor", 1.0, "high_freq_factor", 4.0,
                                      "original_max_position_embeddings", 64));
    snprintf(path, sizeof path, "%s/config.json", dir);
    rc = json_dump_file(cfg, path, JSON_INDENT(2));
    json_decref(cfg);
    return rc;
}

int main(int argc, char **argv)
{
    tiny_spec t = {.dim = 32, .hidden = 0, .layers = 2, .heads = 4, .kv_heads = 2, .vocab = 64, .seed = 1,
                   .scale = 1.0, .dtype = AUGUR_F32};
    const char *out = NULL;
    static const struct option opts[] = {
        {"out", 1, 0, 'o'},   {"dim", 1, 0, 'd'},  {"hidden", 1, 0, 'H'}, {"layers", 1, 0, 'l'},
        {"heads", 1, 0, 'h'}, {"kv-heads", 1, 0, 'k'}, {"vocab", 1, 0, 'v'}, {"seed", 1, 0, 's'},
        {"scale", 1, 0, 'x'}, {"dtype", 1, 0, 't'}, {"qwen2", 0, 0, 'q'}, {"tie", 0, 0, 'T'},
        {"rope-llama3", 0, 0, 'R'}, {"mistral", 0, 0, 'M'},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'd': t.dim = atoi(optarg); break;
        case 'H': t.hidden = atoi(optarg); break;
        case 'l': t.layers = atoi(optarg); break;
        case 'h': t.heads = atoi(optarg); break;
        case 'k': t.kv_heads = atoi(optarg); break;
        case 'v': t.vocab = atoi(optarg); break;
        case 's': t.seed = strtoull(optarg, NULL, 10); break;
        case 'x': t.scale = atof(optarg); break;
        case 't': t.dtype = !strcmp(optarg, "bf16") ? AUGUR_BF16 : !strcmp(optarg, "f16") ? AUGUR_F16 : AUGUR_F32; break;
        case 'q': t.qwen2 = true; break;
        case 'T': t.tie = true; break;
        case 'R': t.rope_llama3 = true; break;
        case 'M': t.mistral = true; break;
        default: fprintf(stderr, "make_tiny_model: bad option\n"); return 2;
        }
    }
    if (!t.hidden)
        t.hidden = 3 * t.dim;
    if (!out || t.dim <= 0 || t.heads <= 0 || t.dim % t.heads || t.kv_heads <= 0 || t.heads % t.kv_heads) {
        fprintf(stderr, "make_tiny_model: --out DIR and a consistent shape are required\n");
        return 2;
    }
    if (write_model(&t, out)) {
        fprintf(stderr, "make_tiny_model: cannot write %s\n", out);
        return 1;
    }
    return 0;
}
