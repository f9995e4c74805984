/* Internal to the model loaders (runtime/model_load.c, runtime/model_device.c): what
 * they share beyond runtime/model.h. */
#ifndef AUGUR_MODEL_SHARD_H
#define AUGUR_MODEL_SHARD_H

#include "runtime/model.h"

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

#endif
