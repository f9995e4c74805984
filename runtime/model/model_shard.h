/* Internal to the model loaders (model_load.c, model_device.c) and what they share:
 * the shard plan (model_shard.c) and releasing weights (model_free.c). */
#ifndef AUGUR_MODEL_SHARD_H
#define AUGUR_MODEL_SHARD_H

#include "runtime/model/model.h"

/* Fills this rank's head, KV-head, intermediate and vocabulary ranges of m from m->cfg
 * (n_layers already cut to max_layers) and m->opts, whose layout tp_check_layout has
 * accepted (DESIGN §5). */
void model_plan_shard(model *m);

/* Releases the weights of a model whose memory is not MODEL_WEIGHTS_HOST through
 * m->backend: every view and fp32 array (an lm_head aliasing the embedding once), each
 * pointer then NULL. The layers array itself stays for model_free. */
void model_free_backend_weights(model *m);

/* Frees the host fp32 arrays (norms, biases) of a MODEL_WEIGHTS_HOST model and closes
 * the checkpoint files its views point into; the layers array itself stays. */
void model_release_host(model *m);

/* Whether lm_head's data lies inside the embedding's rows (tied embeddings), and at
 * which byte offset. Addresses are compared as integers so that this works for host
 * and device pointers alike. */
bool lm_head_in_embedding(const model_weights *w, uintptr_t *offset);

#endif
