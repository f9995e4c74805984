/* Distributed speculative decoding over MPI ranks (DESIGN §3–§5).
 *
 * Layout: world ranks 0..T-1 form the target tensor-parallel group (rank 0 is also the
 * leader), world rank T is the draft rank. Every rank builds a spec_engine for its
 * role; the leader drives requests with spec_leader_generate while the other ranks sit
 * in spec_target_serve / spec_draft_serve until the leader says stop.
 *
 * Sequence invariant: for a confirmed sequence S of length L, every target rank's KV
 * cache holds positions 0..L-2 (all but the last token), so one round verifies
 * [S[L-1], x1..xk] at positions L-1..L-1+k, and trimming after the verdict keeps
 * L + accepted positions. Target-only decoding is the same loop with k = 0. */
#ifndef AUGUR_SPEC_ENGINE_H
#define AUGUR_SPEC_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include <mpi.h>

#include "comm/collectives.h"
#include "comm/gpu_placement.h"
#include "comm/layout.h"
#include "comm/messaging.h"
#include "runtime/spec/sampling.h"
#include "proto/wire.h"
#include "runtime/device_plan.h"
#include "runtime/spec/acceptance.h"
#include "runtime/spec/draft_rules.h"
#include "runtime/forward.h"
#include "runtime/generate.h"
#include "runtime/kv_cache.h"
#include "runtime/model/model.h"
#include "runtime/tokenizer/tokenizer.h"

/* Most tokens one proposal may carry plus the verified last token. */
#define SPEC_MAX_VERIFY (DRAFT_RULE_MAX_GAMMA + 1)
/* Most positions (rows) one forward carries: prefill goes in chunks of this many, and a
 * round's batched verification is cut into forwards of at most this many rows, each of
 * whole requests (one request's rows never span two forwards). 72 keeps every forward
 * inside the 80 rows up to which the CUDA kernels are row-invariant, so a request's
 * logits do not depend on its batch-mates on GPUs either. */
#define SPEC_FORWARD_TOKENS (SPEC_MAX_VERIFY + 7)

/* What a verification forward sends to the leader (Verify.gather). */
typedef enum {
    SPEC_GATHER_NONE = 0,    /* prefill: nothing */
    SPEC_GATHER_ARGMAX = 1,  /* greedy: per-shard (max, argmax) of each row */
    SPEC_GATHER_LOGITS = 2,  /* sampling or tracing: every shard's logits */
} spec_gather;

typedef enum { SPEC_ROLE_TARGET, SPEC_ROLE_DRAFT } spec_role;

typedef struct {
    spec_role role;
    comm_layout *layout;     /* not owned */
    int world_rank;
    int n_targets;           /* T */
    int draft_rank;          /* T */
    MPI_Comm world;
    collectives *ctl;        /* target group over MPI, host buffers: command broadcasts, gathers */
    collectives *tp;         /* target group for the forward's all-reduces: NCCL on GPUs, else ctl */
    augur_backend *be;       /* where this rank's model runs (NULL on an idle draft rank) */
    device_opts dev;
    gpu_placement place;
    memory_plan plan;
    model m;                 /* target shard, or the whole draft model */
    bool has_model;
    forward_ctx fwd;
    kv_cache *slots;         /* [n_slots]: one sequence's KV each (a request in flight) */
    int n_slots;
    /* n_slots > 1: the slots are paged caches sharing this pool, so requests of different
     * lengths share the memory. pool_positions (the same on every rank: the least any
     * rank's pool holds) bounds what the leader admits; reserved_positions is what the
     * admitted requests may grow to. One slot: a contiguous cache, no pool. */
    kv_pool pool;
    bool has_pool;
    int pool_positions;
    int reserved_positions;  /* leader */
    int max_context;
    double timeout_s;        /* how long to wait for a peer before failing */
    bool missed_gate;          /* start-up: some rank never reached a handshake (the job must abort) */
    /* target-side buffers */
    float *logits;           /* [SPEC_FORWARD_TOKENS][vocab_local] */
    float *compact;          /* [SPEC_FORWARD_TOKENS][vocab_local]: the rows one gather sends */
    float *gather_buf;       /* leader: [SPEC_FORWARD_TOKENS][vocab] full logits */
    float *gather_pairs;     /* leader: [SPEC_FORWARD_TOKENS][2] (max logit, token id) */
    int *gather_counts;      /* leader: [T] */
    int vocab;               /* full vocabulary size */
    struct spec_request **requests; /* leader: [n_slots], the request holding each slot or NULL */
} spec_engine;

typedef struct {
    draft_rule rule;
    bool speculate;          /* false: target-only baseline on the same ranks */
    bool overlap;            /* the draft keeps drafting while the target verifies */
    bool overlap_shared_gpu; /* ... even on a GPU it shares with a target rank (else it waits there) */
    sampling_params sampling;
    uint64_t seed;
    int max_tokens;
    acceptance_variant variant;
    bool gather_full;        /* gather full logits even when greedy (target entropy for traces) */
    int debug_draft_exit_after; /* >0: the draft rank exits after this many proposals (tests) */
    /* In [0, 1]: greedy verdicts keep each proposed token with this probability (seeded)
     * instead of comparing it with the target's, so dummy-weight models run the real
     * forwards, messages and KV trims at a chosen acceptance; < 0: off. */
    float synthetic_acceptance;
    /* Keys the seeded draws (with the seed and the position), separate from the wire's
     * request id so that a served request draws what `augur generate --seed S` draws
     * for its one prompt; 0: the request id. */
    uint64_t draw_key;
} spec_request_opts;

typedef struct {
    int rounds;
    int proposed;
    int accepted;
    int generated;
    bool hit_eos;
    double total_ms;
    double prefill_ms;
    double draft_wait_ms;    /* leader blocked waiting for proposals: draft time not hidden */
    double draft_compute_ms; /* drafting after each verdict: on the critical path */
    double draft_hidden_ms;  /* drafting of proposed tokens done while the target verified */
    double verify_ms;        /* target forwards on the leader */
    double comm_ms;          /* broadcasts, gathers, verdicts */
    double sample_ms;        /* acceptance tests and distribution processing */
} spec_stats;

/* Called for each trace record (one per proposed token up to the first rejection). */
typedef void (*spec_trace_fn)(void *user, const wire_trace_record *rec);

typedef struct {
    text_sink *sink;         /* generated text, may be NULL */
    bool echo_prompt;
    int32_t *out_tokens;     /* may be NULL; capacity max_tokens */
    spec_trace_fn trace;     /* may be NULL */
    void *trace_user;
    /* Serving: called after every round with the stats so far (text of the round already
     * written to sink). Returning true ends the request after this round, as a stop
     * token would (a client gone, a stop string matched). May be NULL. */
    bool (*on_round)(void *user, const spec_stats *stats);
    void *round_user;
} spec_output;

/* Builds the engine for this rank (n_slots sequence slots: requests in flight at once;
 * generate uses 1): target ranks load their shard of target_path,
 * the draft rank loads draft_path (or the target's first draft_layers layers), each on
 * the backend dev asks for (a GPU chosen from the node-local ranks for "cuda"), and the
 * KV caches get the context every rank can hold (max_context, or as much as fits).
 * Collective over layout->world (the replica's ranks; GPU placement spans the whole
 * job, layout->job): a failure on any rank fails every rank, and each
 * rank's err says what went wrong (on the rank at fault) or which rank failed. */
augur_status spec_engine_init(spec_engine *e, comm_layout *layout, const char *target_path, const char *draft_path,
                              int draft_layers, bool load_draft, const device_opts *dev, int max_context,
                              int n_slots, augur_error *err);
/* The one place a sequence slot's KV is made (a paged pool's sequence later). */
augur_status spec_engine_slot_init(spec_engine *e, kv_cache *kv, augur_error *err);
/* Sets how long any blocking wait of this rank (messages and collectives) may take. */
void spec_engine_set_timeout(spec_engine *e, double timeout_s);

void spec_engine_free(spec_engine *e);

/* Leader only: whether the KV pool can take a request of n_prompt tokens growing by
 * max_tokens beside the requests in flight (always true without a pool). A request that
 * cannot start now waits for others to end; any request within the context fits an
 * otherwise empty pool. */
bool spec_leader_has_room(const spec_engine *e, int n_prompt, int max_tokens);

/* Leader only: a request in flight, between spec_leader_begin and spec_leader_end. */
typedef struct spec_request spec_request;

/* Starts a request on a free slot (0..n_slots-1): sends the Request to the draft rank
 * (when speculating) and prefills every target rank's slot with the prompt. out and
 * stats must outlive the request; stats is filled as rounds run. Fails with
 * AUGUR_E_INPUT, the ranks untouched, when the prompt does not fit. */
augur_status spec_leader_begin(spec_engine *e, uint64_t request_id, int slot, const tokenizer *tok,
                               const int32_t *prompt, int n_prompt, const spec_request_opts *opts,
                               const spec_output *out, spec_stats *stats, spec_request **handle, augur_error *err);
/* One round over every request in reqs (none finished): each request's proposal, one
 * batched verification (forwards of at most SPEC_FORWARD_TOKENS rows of whole
 * requests), each request's acceptance, trims and verdict. spec_request_finished says
 * which ended (stop token, length, or out->on_round asked). */
augur_status spec_leader_step(spec_engine *e, spec_request **reqs, int n, augur_error *err);
bool spec_request_finished(const spec_request *r);
/* Ends a request (a finishing verdict to the draft if no round gave one), frees its
 * slot on every rank, flushes its text and releases the handle. */
augur_status spec_leader_end(spec_engine *e, spec_request *r, augur_error *err);
/* After an engine failure (the job is ending): releases the leader's side of r only. */
void spec_leader_abandon(spec_engine *e, spec_request *r);

/* Leader only: runs one request (begin, rounds until done, end) on slot 0. */
augur_status spec_leader_generate(spec_engine *e, uint64_t request_id, const tokenizer *tok, const int32_t *prompt,
                                  int n_prompt, const spec_request_opts *opts, const spec_output *out,
                                  spec_stats *stats, augur_error *err);
/* Leader only: releases the other ranks from their serving loops. */
augur_status spec_leader_stop(spec_engine *e, augur_error *err);

/* Target ranks other than the leader, and the draft rank: serve until stopped. */
augur_status spec_target_serve(spec_engine *e, augur_error *err);
augur_status spec_draft_serve(spec_engine *e, augur_error *err);

/* Shared by the leader and the followers: applies one command to this target rank
 * (VERIFY runs a forward on its slot and contributes to the gather its `gather` field
 * asks for; VERIFY_BATCH does so for every forward of the batch; ACCEPT and
 * ACCEPT_BATCH trim slots, FREE empties one). On the leader the gathered rows of the
 * last forward land in e->gather_pairs (SPEC_GATHER_ARGMAX rows: [i][2] = max logit,
 * global token id, reduced over shards) and e->gather_buf (SPEC_GATHER_LOGITS rows:
 * [i][vocab] full logits), each in row order. */
augur_status spec_target_execute(spec_engine *e, const wire_command *cmd, augur_error *err);

/* The segments [from, end) of a VERIFY_BATCH that make its next forward: whole segments,
 * at most SPEC_FORWARD_TOKENS rows (at least one segment). Every rank cuts alike. */
int spec_batch_forward_end(const wire_command *cmd, int from);
/* Runs the forward of segments [from, to) of a VERIFY_BATCH and its gathers. */
augur_status spec_target_verify_forward(spec_engine *e, const wire_command *cmd, int from, int to, augur_error *err);

/* Broadcasts an encoded command over the target group (root = leader). */
augur_status spec_bcast_command(spec_engine *e, wire_command *cmd, augur_error *err);

#endif
