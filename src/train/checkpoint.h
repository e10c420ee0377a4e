/* Checkpoint directories, the TRL layout: intermediate checkpoints in
 * OUTPUT/checkpoint-STEP/, the final model in OUTPUT itself. Each is a Hugging
 * Face model directory (written by the engine through a callback) plus the
 * tokenizer files of the source model, oprm.json, trainer_state.json and
 * optimizer.bin, and last a manifest checkpoint_complete.json listing every
 * file with its size and checksum.
 *
 * Atomicity: a checkpoint is built in OUTPUT/.checkpoint-STEP.tmp-PID, every
 * file and the directory fsynced, the manifest written last, then renamed
 * into place (an existing target is first renamed to .checkpoint-STEP.old-PID
 * and deleted after). A directory without a valid manifest is never loaded.
 * Details in docs/training.md. */
#ifndef OPRM_TRAIN_CHECKPOINT_H
#define OPRM_TRAIN_CHECKPOINT_H

#include <stdint.h>

#include "train/adamw.h"
#include "train/oprm_meta.h"
#include "train/trainer_state.h"
#include "util/err.h"

#define CHECKPOINT_MANIFEST "checkpoint_complete.json"
#define CHECKPOINT_OPTIMIZER_FILE "optimizer.bin"

/* Writes the model (config.json + weights) into dir; e.g. a wrapper around
 * model_save. Returns 0 or -1 with err set. */
typedef int (*CheckpointModelWriter)(void *ctx, const char *dir, OprmError *err);

typedef struct {
    CheckpointModelWriter write_model; /* required */
    void *model_ctx;
    const char *tokenizer_dir; /* source model dir whose tokenizer files are copied; NULL = none */
    const OprmMeta *meta;      /* oprm.json; NULL = not written */
    const TrainerState *state; /* trainer_state.json; NULL = not written */
    const AdamW *opt;          /* optimizer.bin; NULL = not written */
} CheckpointContent;

/* Files copied from tokenizer_dir when present. */
extern const char *const checkpoint_tokenizer_files[];

/* Saves OUTPUT/checkpoint-STEP atomically (replacing one of the same step),
 * then, if save_total_limit > 0, deletes the oldest complete checkpoints so at
 * most that many remain (never the one just written). On failure nothing
 * named checkpoint-STEP is changed and the temp dir is removed. If path_out
 * is non-NULL it receives the checkpoint's path (caller frees). */
int checkpoint_save(const char *output_dir, int64_t step, const CheckpointContent *c, int save_total_limit,
                    char **path_out, OprmError *err);

/* Saves the final model into output_dir itself: built in
 * OUTPUT/.final.tmp-PID, then the old manifest is removed, the files are
 * renamed in one by one and the new manifest comes last, so a crash midway
 * leaves OUTPUT without a manifest (refused by loaders), never a mix that
 * claims to be complete. Files listed in the previous manifest but not
 * written this time are deleted. checkpoint-* subdirectories are kept. */
int checkpoint_save_final(const char *output_dir, const CheckpointContent *c, OprmError *err);

/* Checks dir's manifest: every listed file present with the listed size and,
 * if full, the listed checksum. A missing manifest gives a message saying the
 * checkpoint is incomplete (interrupted while being written). */
int checkpoint_verify(const char *dir, int full, OprmError *err);

/* Verifies (full) and loads what the caller asks for: state (needs
 * trainer_state.json), opt (moments into an optimizer made for the same
 * parameters; needs optimizer.bin), meta (needs oprm.json). NULL = skip. */
int checkpoint_load(const char *dir, TrainerState *state, AdamW *opt, OprmMeta *meta, OprmError *err);

/* The complete checkpoint-STEP under output_dir with the highest STEP.
 * Returns 1 (found: *path_out malloc'd, *step_out set), 0 (none, also when
 * output_dir does not exist) or -1 (cannot read output_dir). Directories
 * without a valid manifest and hidden temp dirs are skipped. */
int checkpoint_find_latest(const char *output_dir, char **path_out, int64_t *step_out, OprmError *err);

/* --resume: arg NULL or "latest" -> checkpoint_find_latest (error if none);
 * else arg is a checkpoint directory, verified. Returns a malloc'd path or
 * NULL with err set. */
char *checkpoint_resolve_resume(const char *output_dir, const char *arg, OprmError *err);

/* Removes what interrupted saves of dead processes left in output_dir:
 * .checkpoint-*.tmp-PID and .final.tmp-PID directories; a
 * .checkpoint-STEP.old-PID is renamed back to checkpoint-STEP if that is
 * missing (the crash hit between the two renames), else removed. Leftovers
 * of live processes are not touched. Returns how many were removed or
 * restored, or -1. */
int checkpoint_cleanup_stale(const char *output_dir, OprmError *err);

/* Deletes the oldest complete checkpoint-* dirs so that at most keep remain;
 * the directory named keep_path (may be NULL) is never deleted. */
int checkpoint_rotate(const char *output_dir, int keep, const char *keep_path, OprmError *err);

/* rm -rf (no symlink following). */
int remove_tree(const char *path, OprmError *err);

#endif
