/* oprm.json "training_args": how a run was trained, written with every
 * checkpoint, and what a resumed run takes back from it (every setting the
 * resume does not set; a set one must agree with the run). */
#ifndef OPRM_TRAIN_TRAIN_ARGS_H
#define OPRM_TRAIN_TRAIN_ARGS_H

#include <jansson.h>

#include "train/oprm_meta.h"
#include "train/trainer.h"

/* A new JSON object of c's settings (c->max_length already resolved). */
json_t *train_args_json(const TrainConfig *c);

/* --lora_target_modules: "all-linear" (or NULL) or a comma list of q,k,v,o,
 * gate,up,down or their PEFT names q_proj ... down_proj. */
int train_lora_targets_parse(const char *list, unsigned *mask, OprmError *err);

/* Resume from the checkpoint dir whose oprm.json is meta: every setting in
 * c->unset is taken from the run (strings then point into meta: keep it
 * until the run ends); a set setting that differs from the run is refused
 * with a message naming both values, except a larger max_steps or
 * num_train_epochs (they extend the run). Old runs without a key keep c's. */
int train_args_resume(TrainConfig *c, const OprmMeta *meta, const char *dir, OprmError *err);

#endif
