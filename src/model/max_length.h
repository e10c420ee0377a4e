/* The one length rule of every command that takes a scoring-prompt length
 * (train --max_length, score/eval/bon/audit/serve --max-len): a length above
 * the model's max_position_embeddings is refused with a message naming both
 * numbers; without one, the run's saved training length (capped at the
 * model) or else min(OPRM_DEFAULT_MAX_LENGTH, max_position_embeddings). */
#ifndef OPRM_MODEL_MAX_LENGTH_H
#define OPRM_MODEL_MAX_LENGTH_H

#include "util/err.h"

#define OPRM_DEFAULT_MAX_LENGTH 1024

/* given: the flag's value, <= 0 when not given; saved: a trained run's
 * max_length, <= 0 when none; max_pos: the model's max_position_embeddings,
 * <= 0 when unknown (no cap). flag: the flag's name for the message. */
int max_length_resolve(int given, int saved, int max_pos, const char *flag, int *out, OprmError *err);

#endif
