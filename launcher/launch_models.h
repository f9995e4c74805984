/* augur launch: the models of a config against its layout (T divides the target's
 * heads and KV heads, the draft's vocabulary is the target's), checked from their
 * config.json before any rank starts. Errors name the config file and key. */
#ifndef AUGUR_LAUNCH_MODELS_H
#define AUGUR_LAUNCH_MODELS_H

#include <stdbool.h>

#include "launcher/launch_config.h"

/* missing_ok (--dry-run): a model path that does not exist here is a note on stderr,
 * not an error, so that a cluster's layout can be checked away from its models. */
augur_status launch_check_models(const launch_config *c, bool missing_ok, augur_error *err);

#endif
