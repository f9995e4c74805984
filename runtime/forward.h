/* The transformer forward pass of one rank over a block of new positions.
 *
 * The same call serves prefill (a chunk of the prompt), decode (one token) and
 * speculative verification (γ+1 tokens): it appends the new positions to the KV
 * cache and writes this rank's vocabulary shard of the logits. With a tensor-parallel
 * group (tp != NULL) the O and down projections are all-reduced across it.
 *
 * Every kernel goes through one compute backend (kernels/backend.h): activations and
 * the KV cache live in its memory, the model's weights too (model_to_backend). Token
 * ids come from the host and logits go back to it, so the layers above (generation,
 * the speculative engine) are the same for every backend. */
#ifndef AUGUR_FORWARD_H
#define AUGUR_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "comm/collectives.h"
#include "kernels/backend.h"
#include "base/error.h"
#include "runtime/kv_cache.h"
#include "runtime/model/model.h"

typedef struct {
    const model *m;
    augur_backend *be;
    bool owns_be;             /* forward_init made a CPU backend itself */
    collectives *tp;          /* NULL: a single rank holds the whole model */
    int max_tokens;           /* most positions one call may carry */
    int max_seq;              /* context length of the caches it serves */
    float *inv_freq;          /* [head_dim/2] */
    int32_t *ids;             /* [max_tokens] token ids in backend memory */
    int32_t *argmax;          /* [2 * max_tokens] backend memory (device backends): rows' argmax, and
                               * after the `wanted` ids of forward_run_batch_reduced, each one's logit */
    int32_t *reduced;         /* [2 * max_tokens] host: those, downloaded together */
    float *x, *xb, *q, *k, *v, *att, *proj, *gate, *up; /* activations, [max_tokens][...] */
    float *logits;            /* [max_tokens][vocab_local] (device backends) */
    float *stage;             /* host copy of proj when tp works on host memory but be does not */
    bool time_allreduce;      /* synchronise before each all-reduce so that allreduce_ms is its own time */
    double allreduce_ms;      /* time inside the TP all-reduces, summed over calls */
    int64_t allreduces;       /* how many */
    int64_t allreduce_bytes;  /* payload summed over calls (fitting latency + bytes / bandwidth) */
    /* Captured steps (on a backend with caps.graphs unless AUGUR_CUDA_GRAPHS=0; with a TP
     * group only under AUGUR_CUDA_GRAPHS_NCCL=1 where its all-reduces can be captured):
     * each (rows, first logits row) runs once uncaptured, then is captured and replayed
     * with its position read from pos (device) when it runs. */
    bool graphs;
    int graph_rows;           /* steps of up to this many rows are captured */
    int32_t *pos;             /* [1] device: the step's first position */
    void **graph;             /* [(graph_rows + 1)^2]: captured steps by key */
    unsigned char *graph_ran; /* [same]: the step ran uncaptured (its scratch is sized) */
    int64_t graph_replays, graph_captures;
    /* The contiguous cache the steps were captured against (they bake in its addresses);
     * forward_run runs any other cache, and every paged one, uncaptured. */
    const float *graph_k, *graph_v;
    int graph_layer_rows;
    /* Greedy chains (forward_greedy_chain) captured whole, by (first step's rows, steps),
     * [(FORWARD_CHAIN_FEED + 1) * (FORWARD_CHAIN_STEPS + 1)]; NULL where chains are off
     * (no captured steps, a TP group, a backend without argmax_feed, AUGUR_CUDA_CHAINS=0). */
    void **chain;
    unsigned char *chain_ran;
    int64_t chains, chained_tokens;
    /* A draft's greedy chains as one fused launch each (forward_use_fused); NULL: off. */
    augur_fused_model *fused;
    int64_t fused_chains, fused_tokens;
} forward_ctx;

/* A greedy chain's first step feeds at most this many tokens, and one chained program runs
 * at most this many steps (longer chains run as several). */
#define FORWARD_CHAIN_FEED 16
#define FORWARD_CHAIN_STEPS 32

/* be: the backend the model's weights live in (NULL: a CPU backend with `threads`
 * threads, owned by the context). tp may be NULL. Captured steps are on where the backend
 * can capture, unless the environment has AUGUR_CUDA_GRAPHS=0; with a TP group only where
 * its all-reduces can join the graph (NCCL) and AUGUR_CUDA_GRAPHS_NCCL=1. Greedy chains
 * (forward_greedy_chain) are captured too, without a TP group, unless AUGUR_CUDA_CHAINS=0. */
augur_status forward_init(forward_ctx *f, const model *m, augur_backend *be, collectives *tp, int threads,
                          int max_tokens, int max_seq, augur_error *err);
void forward_free(forward_ctx *f);

/* Lets forward_greedy_chain run a chain as one fused launch of the whole model
 * (backend_greedy_fused), for a draft whose proposals need not equal the separate
 * kernels' bit for bit (the target verifies them; a near-tie may go the other way). Only
 * where the backend has the op, the model is whole on this rank (no TP group), its
 * matrices are bf16 of dense rows without biases, it has at most AUGUR_FUSED_MAX_LAYERS
 * layers and at most FORWARD_FUSED_MAX_BYTES of weights (past that a step is bound by
 * bytes, where the separate kernels read them faster), and AUGUR_CUDA_FUSED_DRAFT is
 * not 0. Returns whether it is on; why_not (may be NULL) gets the reason when not. */
bool forward_use_fused(forward_ctx *f, char *why_not, size_t len);

/* The weight bytes under which forward_use_fused takes a model: a small draft's are in L2
 * and its step is bound by kernel boundaries. */
#define FORWARD_FUSED_MAX_BYTES ((size_t)64 << 20)

/* When captured steps are on: one stderr line "augur: WHO: captured steps: N captures, M
 * replays" (what a run's figures owe to them, and proof that they ran). */
void forward_report_graphs(const forward_ctx *f, const char *who);
/* When fused chains are on (forward_use_fused): "augur: WHO: fused greedy chains: N (T tokens)". */
void forward_report_fused(const forward_ctx *f, const char *who);

/* Bytes of backend memory forward_init allocates for these limits (memory plans). */
size_t forward_workspace_bytes(const model *m, int max_tokens);

/* Runs tokens[0..n) at positions kv->len .. kv->len+n-1 (n <= max_tokens), appends
 * them to kv, and writes logits rows for positions logits_from..n-1 into host memory
 * logits[(n - logits_from)][m->vocab_local]. logits may be NULL (prefill chunks
 * whose logits nobody reads). */
augur_status forward_run(forward_ctx *f, kv_cache *kv, const int32_t *tokens, int n, int logits_from,
                         float *logits, augur_error *err);

/* One sequence's share of a batched forward: n new tokens appended to its own cache kv at
 * positions kv->len .., logits wanted for rows logits_from..n-1 (logits_from = n: none). */
typedef struct {
    kv_cache *kv;
    const int32_t *tokens;
    int n;
    int logits_from;
} forward_seq;

/* Runs several sequences' new tokens as one forward (continuous batching: each request's
 * verification rows beside the others'). The rows of all sequences are concatenated:
 * embedding, norms, every projection, the MLP and the LM head run once over all of them
 * (one pass over the weights); RoPE, the KV store and attention run per sequence, each at
 * its own positions against its own cache (contiguous or paged, mixed freely). Every row
 * gets the arithmetic it would get alone (the kernels are row-invariant: on the CPU
 * always, on CUDA up to CUK_INVARIANT_ROWS rows in the call), so a sequence's logits equal
 * forward_run's on it alone, bit for bit, whatever its batch-mates. The rows of all
 * sequences together must fit max_tokens. logits: host memory, the wanted rows of every
 * sequence in order, [sum(n - logits_from)][m->vocab_local]; may be NULL (none).
 * Sequences must use distinct caches. One sequence is a plain forward_run (captured steps
 * included); several never capture. On failure no cache has grown (blocks reserved for
 * the call go back to their pools). */
augur_status forward_run_batch(forward_ctx *f, const forward_seq *seqs, int n_seqs, float *logits,
                               augur_error *err);

/* forward_run_batch whose wanted rows (i = 0 .. sum(n - logits_from) - 1, in order) are
 * reduced where the logits are computed: argmax[i] (argmax_f32's rule) and max[i] = row
 * i's logit at argmax[i]; only rows with row_logits[i] are copied into logits (host,
 * [rows][vocab_local], other rows untouched), so a device backend sends back a few bytes
 * a row where greedy verification needs no more (no vocabulary row to move and scan on
 * the host). Host-memory backends fill every row of logits (it must hold them all).
 * row_logits may be NULL (none). */
augur_status forward_run_batch_reduced(forward_ctx *f, const forward_seq *seqs, int n_seqs, const bool *row_logits,
                                       float *logits, int32_t *argmax, float *max, augur_error *err);

/* Feeds a long token sequence through in max_tokens chunks; logits of the last
 * position only (may be NULL). */
augur_status forward_prefill(forward_ctx *f, kv_cache *kv, const int32_t *tokens, int n, float *last_logits,
                             augur_error *err);

/* forward_prefill whose last position's logits reduce to their argmax where they were
 * computed (argmax_f32's rule: the lowest index wins ties, NaN is never chosen), so a
 * device backend sends back one int32 instead of a vocabulary row and the host scans
 * nothing (a greedy draft's step). logits: host scratch of vocab_local floats, used by
 * host-memory backends only. */
augur_status forward_prefill_argmax(forward_ctx *f, kv_cache *kv, const int32_t *tokens, int n, float *logits,
                                    int32_t *argmax, augur_error *err);

/* Greedy decoding of `steps` tokens in a row (a greedy draft's proposal): feeds tokens[0..n)
 * at kv->len.., takes the last position's argmax (argmax_f32's rule) as out[0], feeds it,
 * takes out[1], and so on; kv grows by n + steps - 1 (the last token chosen is not fed).
 * Where steps are captured and the backend can chain (forward_ctx.chain), a chain of up to
 * FORWARD_CHAIN_STEPS steps is one captured program: one launch and one download for all
 * its tokens, each step's token and position written on the device by the step before.
 * Elsewhere (or with a first step over FORWARD_CHAIN_FEED tokens, or too close to the
 * context's end) it runs forward_prefill_argmax step by step. Either way each step is the
 * forward of the same rows at the same positions, so the tokens are the same. With fused
 * chains on (forward_use_fused) and a contiguous cache, the chain is instead one fused
 * launch of the whole model, whose tokens may differ in a near-tie; beside: that launch
 * runs beside other work on the device and takes a few multiprocessors
 * (backend_greedy_fused). logits: host scratch of vocab_local floats, used by host-memory
 * backends only. */
augur_status forward_greedy_chain(forward_ctx *f, kv_cache *kv, const int32_t *tokens, int n, int steps, bool beside,
                                  int32_t *out, float *logits, augur_error *err);

#endif
