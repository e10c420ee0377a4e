/* oprm.json: what a checkpoint needs beyond the Hugging Face files to score
 * exactly as it was trained (scoring prompt, chat format, digit ids, head)
 * and a record of how it was trained. Schema in docs/training.md. */
#ifndef OPRM_TRAIN_OPRM_META_H
#define OPRM_TRAIN_OPRM_META_H

#include <jansson.h>
#include <stdint.h>

#include "util/err.h"

#define OPRM_META_FILE "oprm.json"
#define OPRM_META_VERSION 1

typedef struct {
    char *head;          /* "oprm" (nine digit logits) or "bt" (Bradley-Terry scalar head) */
    char *chat_format;   /* name of the chat format the prompt was rendered in, e.g. "chatml" */
    char *system_prompt; /* scoring template: the system message */
    char *user_template; /* scoring template: user message layout, NULL = built-in default */
    char *cue;           /* text the prompt ends with, "Score: " by default */
    int32_t digit_ids[9];/* token ids of '1'..'9' at the score position */
    char *base_model;    /* the model directory training started from (informational), may be NULL */
    json_t *training_args; /* JSON object of the run's flags (owned reference), may be NULL */
} OprmMeta;

/* Serialises meta to a JSON object (new reference). */
json_t *oprm_meta_to_json(const OprmMeta *meta);
/* Parses and validates (types, 9 distinct non-negative digit ids, known head);
 * errors name the field. Fills *meta (free with oprm_meta_free). */
int oprm_meta_from_json(const json_t *root, OprmMeta *meta, OprmError *err);

/* path: the oprm.json file. Write is atomic (fsynced). */
int oprm_meta_write(const OprmMeta *meta, const char *path, OprmError *err);
int oprm_meta_read(const char *path, OprmMeta *meta, OprmError *err);
void oprm_meta_free(OprmMeta *meta);

#endif
