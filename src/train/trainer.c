#include "train/trainer.h"

#include <dirent.h>

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "data/reader.h"
#include "dist/dist.h"
#include "io/fileio.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "ordinal/ordinal.h"
#include "tok/chat.h"
#include "tok/prompt.h"
#include "tok/tokenizer.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/interrupt.h"
#include "train/oprm_meta.h"
#include "train/rng.h"
#include "train/train_batch.h"
#include "train/train_device.h"
#include "train/train_dist.h"
#include "train/train_log.h"
#include "util/progress.h"
#include "train/trainer_state.h"
#include "train/train_args.h"
#include "model/max_length.h"

void train_config_default(TrainConfig *c) {
    memset(c, 0, sizeof *c);
    data_options_default(&c->data_opt);
    c->learning_rate = 1e-5;
    c->num_train_epochs = 1;
    c->batch_size = 8;
    c->grad_accum = 1;
    c->max_length = 0; /* min(1024, max_position_embeddings) */
    c->scheduler = SCHED_LINEAR;
    c->max_grad_norm = 1.0;
    c->seed = 42;
    c->adam_beta1 = 0.9;
    c->adam_beta2 = 0.999;
    c->adam_epsilon = 1e-8;
    c->logging_steps = 1;
    c->save_steps = 500;
    c->loss = TRAIN_LOSS_OPRM;
    c->rgft_enabled = 1;
    c->rgft = rgft_default_config();
    c->label_fraction = 1.0;
    c->progress = -1;
    c->dataloader_num_workers = 1;
    c->device = (Device){DEVICE_CPU, 0};
}

int train_config_check(const TrainConfig *c, OprmError *err) {
    if (!c->model_dir) return oprm_fail(err, "--model DIR is required");
    if (c->n_data < 1) return oprm_fail(err, "--data FILE is required (give it once per file)");
    if (!c->output_dir) return oprm_fail(err, "--output DIR is required");
    if (!(c->learning_rate > 0) || !isfinite(c->learning_rate))
        return oprm_fail(err, "--learning_rate must be > 0 (got %g)", c->learning_rate);
    if (c->max_steps <= 0 && !(c->num_train_epochs > 0))
        return oprm_fail(err, "--num_train_epochs must be > 0 when --max_steps is not given");
    if (c->batch_size < 1) return oprm_fail(err, "--per_device_train_batch_size must be >= 1");
    if (c->grad_accum < 1) return oprm_fail(err, "--gradient_accumulation_steps must be >= 1");
    if (c->max_length != 0 && c->max_length < 16)
        return oprm_fail(err, "--max_length must be >= 16 (got %d)", c->max_length);
    if (c->warmup_steps < 0 || c->warmup_ratio < 0 || c->warmup_ratio > 1)
        return oprm_fail(err, "--warmup_steps must be >= 0 and --warmup_ratio in [0, 1]");
    if (c->weight_decay < 0) return oprm_fail(err, "--weight_decay must be >= 0");
    if (!(c->adam_beta1 >= 0 && c->adam_beta1 < 1) || !(c->adam_beta2 >= 0 && c->adam_beta2 < 1))
        return oprm_fail(err, "--adam_beta1 and --adam_beta2 must be in [0, 1)");
    if (!(c->adam_epsilon > 0)) return oprm_fail(err, "--adam_epsilon must be > 0");
    if (c->logging_steps < 1) return oprm_fail(err, "--logging_steps must be >= 1");
    if (c->eval_steps < 0 || c->save_steps < 0 || c->save_total_limit < 0)
        return oprm_fail(err, "--eval_steps, --save_steps and --save_total_limit must be >= 0");
    if (!(c->label_fraction >= 0 && c->label_fraction <= 1))
        return oprm_fail(err, "--label-fraction must be in [0, 1] (got %g)", c->label_fraction);
    if (!(c->rgft.halfwidth > 0) || !isfinite(c->rgft.halfwidth))
        return oprm_fail(err, "--rgft-halfwidth must be > 0");
    if (!(c->rgft.floor > 0 && c->rgft.floor <= 1)) return oprm_fail(err, "--rgft-floor must be in (0, 1]");
    if (c->threads < 0) return oprm_fail(err, "--threads must be >= 0");
    if (c->dataloader_num_workers < 0) return oprm_fail(err, "--dataloader_num_workers must be >= 0");
    if (c->lora_rank < 0) return oprm_fail(err, "--lora-rank must be >= 0");
    if (c->zero != 0 && c->zero != 1) return oprm_fail(err, "--zero must be 0 or 1 (got %d)", c->zero);
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Everything one run holds. */
typedef struct {
    TrainConfig *cfg; /* train_run's copy: a resume fills it from the run, setup resolves max_length */
    char *resume_dir; /* the checkpoint resumed from, NULL for a fresh run */
    const OprmMeta *resume_meta; /* its oprm.json */
    Tokenizer *tok;
    ChatFormat format;
    ScoringTemplate tpl;
    int32_t digits[9];
    BatchSetup setup;
    Model *model;       /* the host model: the CPU engine trains it; a device engine's checkpoint image */
    Engine *engine;     /* every forward and backward goes through it */
    int on_host;        /* engine_params_on_host: the trainer clips and steps the host tensors itself */
    TrainDevice dev;    /* !on_host: the step split between the engine and the host (train_device.h) */
    int np_model;       /* params[0, np_model) are the model's, the BT head after them */
    int hidden;
    ModelParam *params; /* the engine's parameters, plus the BT head last when --loss bt */
    int nparams;
    float *bt_w, *bt_g;
    AdamW *opt;
    TrainDist dist; /* data parallel (src/dist): gradient sum, ZeRO-1 shards */
    DataFile *files[TRAIN_MAX_DATA_FILES];
    size_t file_start[TRAIN_MAX_DATA_FILES + 1];
    size_t total;
    DataFile *eval;
    TrainerState st;
    Schedule sched;
    TrainLog log;
    int64_t truncated, contradictions, tokens_total;
    /* pairs the reader left out (spec §3): of --data by reason, of --eval-data in all */
    int64_t load_contradicting, load_identical, eval_load_skipped;
    int64_t best_of_n; /* best-of-N sets in --data and --eval-data */
    char *last_checkpoint;
    json_t *args;
    int progress;
    Progress bar;
} Trainer;

static const char *where_of(Trainer *t, size_t file, size_t line, char *buf, size_t size) {
    snprintf(buf, size, "%s:%zu", t->cfg->data[file], line);
    return buf;
}

static int read_record(Trainer *t, int64_t index, DataRecord *rec, char *where, size_t wsize, OprmError *err) {
    size_t f = 0;
    while (f + 1 < (size_t)t->cfg->n_data && (size_t)index >= t->file_start[f + 1]) f++;
    if (data_read(t->files[f], (size_t)index - t->file_start[f], rec, err) != 0) return -1;
    where_of(t, f, rec->line, where, wsize);
    return 0;
}

/* Where the data stream stands. The loop's copy lives in the trainer state
 * (what checkpoints save); the prefetch thread advances its own copy for the
 * next step, which the loop adopts once that step begins. */
typedef struct {
    int64_t epoch, position;
    Rng rng;
    int64_t *order;   /* this epoch's permutation */
    int order_is_new; /* allocated by this copy (a new epoch began in it) */
} Stream;

static Stream stream_from_state(const TrainerState *st) {
    return (Stream){st->epoch, st->data_position, st->rng, st->data_order, 0};
}

static void stream_adopt(TrainerState *st, Stream *s) {
    st->epoch = s->epoch;
    st->data_position = s->position;
    st->rng = s->rng;
    if (s->order_is_new) {
        free(st->data_order);
        st->data_order = s->order;
    }
    s->order_is_new = 0;
}

static void stream_discard(Stream *s) {
    if (s->order_is_new) free(s->order);
    s->order_is_new = 0;
}

/* The next example; a new epoch draws its permutation from the stream's RNG
 * when the current one is used up. */
static int64_t stream_next(Stream *s, size_t n) {
    if ((size_t)s->position >= n) {
        int64_t *fresh = xmalloc(n * sizeof *fresh);
        rng_permutation(&s->rng, fresh, n);
        if (s->order_is_new) free(s->order);
        s->order = fresh;
        s->order_is_new = 1;
        s->epoch++;
        s->position = 0;
    }
    return s->order[s->position++];
}

/* ---- the model writer of checkpoints (engine files + the BT head) ---- */

/* A LoRA run saves the merged weights (a plain HF checkpoint any tool loads)
 * and, in DIR/adapter/, the fp32 PEFT adapter that exact resume reloads on
 * top of the base. The adapter lives in a subdirectory so that transformers
 * (with peft installed) does not mistake the checkpoint for an adapter. */
static int write_adapter(const Trainer *t, const char *dir, OprmError *err) {
    char *ad = path_join(dir, LORA_ADAPTER_DIR);
    int rc = make_dirs(ad, err);
    if (rc == 0) rc = model_save_adapter(t->model, ad, err);
    free(ad);
    return rc;
}

static int write_model(void *ctx, const char *dir, OprmError *err) {
    Trainer *t = ctx;
    if (model_save(t->model, dir, err) != 0) return -1;
    if (t->cfg->lora_rank > 0 && write_adapter(t, dir, err) != 0) return -1;
    if (t->bt_w) {
        StWriteTensor w = {.name = BT_HEAD_TENSOR, .data = t->bt_w, .ndim = 2, .shape = {1, t->hidden}};
        char *p = path_join(dir, BT_HEAD_FILE);
        int rc = st_write_f32(p, &w, 1, NULL, 0, err);
        free(p);
        if (rc) return -1;
    }
    return 0;
}

static int load_bt_head(Trainer *t, const char *dir, OprmError *err) {
    char *p = path_join(dir, BT_HEAD_FILE);
    StFile *f = st_open(p, err);
    int rc = -1;
    if (f) {
        const StTensor *w = st_find(f, BT_HEAD_TENSOR);
        if (!w || w->numel != (size_t)t->hidden)
            oprm_fail(err, "%s: tensor '%s' missing or not of size %d", p, BT_HEAD_TENSOR, t->hidden);
        else
            rc = st_to_f32(f, w, t->bt_w, err);
        st_close(f);
    }
    free(p);
    return rc;
}

static int save_checkpoint_rank0(Trainer *t, int final, AdamW *opt, OprmError *err);

/* Rank 0 alone writes (with the optimizer state gathered from every ZeRO
 * shard first); every rank learns whether the save worked. */
static int save_checkpoint(Trainer *t, int final, OprmError *err) {
    /* A device engine's weights (and, for a checkpoint, moments) into the
     * host image first: the files are those of the host path. */
    if (!t->on_host && dist_agree(train_device_download(&t->dev, !final, err), err)) return -1;
    AdamW *full = final ? NULL : train_dist_full_opt(&t->dist, t->opt, t->params, t->nparams);
    int rc = dist_rank() == 0 ? save_checkpoint_rank0(t, final, full, err) : 0;
    if (full && full != t->opt) adamw_free(full);
    return dist_agree(rc, err);
}

static int save_checkpoint_rank0(Trainer *t, int final, AdamW *opt, OprmError *err) {
    OprmMeta meta = {0};
    meta.head = t->cfg->loss == TRAIN_LOSS_BT ? "bt" : "oprm";
    meta.chat_format = (char *)chat_format_name(t->format);
    meta.system_prompt = t->tpl.system;
    meta.user_template = t->cfg->template_path ? t->tpl.user : NULL;
    meta.cue = t->tpl.cue;
    memcpy(meta.digit_ids, t->digits, sizeof meta.digit_ids);
    meta.base_model = (char *)t->cfg->model_dir;
    meta.training_args = t->args;
    json_t *extra = json_object();
    json_object_set_new(extra, "truncated", json_integer(t->truncated));
    json_object_set_new(extra, "contradictions_skipped", json_integer(t->contradictions));
    json_object_set_new(extra, "tokens", json_integer(t->tokens_total));
    if (t->st.extra) json_decref(t->st.extra);
    t->st.extra = extra;
    CheckpointContent c = {.write_model = write_model,
                           .model_ctx = t,
                           .tokenizer_dir = t->cfg->model_dir,
                           .meta = &meta,
                           .state = &t->st,
                           .opt = final ? NULL : opt};
    if (final) {
        if (checkpoint_save_final(t->cfg->output_dir, &c, err) != 0) return -1;
        /* The final save moves files one by one and keeps no subdirectory. */
        return t->cfg->lora_rank > 0 ? write_adapter(t, t->cfg->output_dir, err) : 0;
    }
    char *path = NULL;
    if (checkpoint_save(t->cfg->output_dir, t->st.global_step, &c, t->cfg->save_total_limit, &path, err) != 0)
        return -1;
    free(t->last_checkpoint);
    t->last_checkpoint = path;
    return 0;
}

/* ---- one micro-batch through the engine ---- */

typedef struct {
    double loss_sum;
    int items, pairs, correct;
    double engine_s;
} StepStats;

/* train: forward(train=1) + backward with gradient scale; else forward only. */
static int run_micro_batch(Trainer *t, MicroBatch *b, int train, double scale, StepStats *ss, int *bad_item,
                           OprmError *err) {
    *bad_item = -1;
    if (b->nseq == 0) return 0;
    double t0 = now_s();
    SeqBatch sb = {.ids = b->ids.v, .lens = b->lens, .nseq = b->nseq,
                   .group = t->cfg->no_prefix_sharing ? NULL : b->group}; /* exact either way */
    size_t hn = (size_t)b->nseq * (size_t)t->hidden;
    float *h = xmalloc(hn * sizeof *h);
    float *dh = train && t->cfg->loss == TRAIN_LOSS_BT ? xcalloc(hn, sizeof *dh) : NULL;
    /* Evaluation keeps nothing for backward (the scoring forward). */
    int rc = train ? engine_forward(t->engine, &sb, h, err) : engine_forward_eval(t->engine, &sb, h, err);
    BatchLoss bl;
    if (rc == 0) {
        if (t->cfg->loss == TRAIN_LOSS_BT) {
            /* The BT head is a host vector: dL/dh_last is made here from h_last. */
            rc = batch_bt_loss(b, h, t->bt_w, t->hidden, scale, dh, train ? t->bt_g : NULL, &bl, err);
            if (rc == 0 && bl.bad_item < 0 && train) rc = engine_backward(t->engine, dh, err);
        } else {
            float *logits = xmalloc((size_t)b->nseq * 9 * sizeof *logits);
            float *dlogits = train ? xmalloc((size_t)b->nseq * 9 * sizeof *dlogits) : NULL;
            rc = engine_head_rows(t->engine, t->digits, 9, logits, err);
            if (rc == 0) rc = batch_oprm_loss(b, logits, scale, dlogits, &bl, err);
            if (rc == 0 && bl.bad_item < 0 && train) rc = engine_head_backward(t->engine, t->digits, 9, dlogits, err);
            free(logits);
            free(dlogits);
        }
    }
    if (rc == 0) {
        *bad_item = bl.bad_item;
        ss->loss_sum += bl.loss_sum;
        ss->items += bl.n_items;
        ss->pairs += bl.pairs;
        ss->correct += bl.pairs_correct;
    }
    free(h);
    free(dh);
    ss->engine_s += now_s() - t0;
    return rc;
}

/* ---- evaluation ---- */

typedef struct {
    double loss, acc;
    int records;
    int64_t prompts, truncated; /* scoring prompts built / cut to --max_length */
    int64_t skipped; /* pairs left out: contradicting labels or identical texts (spec §3) */
} EvalResult;

static int evaluate(Trainer *t, EvalResult *out, OprmError *err) {
    size_t n = data_count(t->eval);
    StepStats ss = {0};
    MicroBatch b = {0};
    int rc = 0;
    int64_t contradictions = 0, truncated = 0, prompts = 0;
    /* Data parallel: rank r scores records r, r + K, ...; the sums are reduced. */
    size_t k = (size_t)dist_size();
    for (size_t i = (size_t)dist_rank(); i < n && rc == 0; i += k) {
        DataRecord rec;
        char where[512];
        if (data_read(t->eval, i, &rec, err) != 0) {
            rc = -1;
            break;
        }
        snprintf(where, sizeof where, "%s:%zu", t->cfg->eval_data, rec.line);
        /* Evaluation scores every label it is given (no --label-fraction). */
        BatchSetup es = t->setup;
        es.label_fraction = 1.0;
        int added = micro_batch_add(&b, &es, &rec, (int64_t)i, where, err);
        record_free(&rec);
        if (added < 0) rc = -1;
        if (rc == 0 && (b.n_items >= t->cfg->batch_size || i + k >= n)) {
            int bad;
            truncated += b.truncated;
            prompts += b.nseq;
            rc = run_micro_batch(t, &b, 0, 1.0, &ss, &bad, err);
            if (rc == 0 && bad >= 0)
                rc = oprm_fail(err, "evaluation: record %s gives non-finite logits or loss", b.items[bad].id);
            contradictions += b.contradictions;
            micro_batch_clear(&b);
        }
    }
    micro_batch_free(&b);
    if (dist_agree(rc, err)) return -1;
    double sums[6] = {ss.loss_sum, ss.items, ss.pairs, ss.correct, (double)prompts, (double)truncated};
    dist_allreduce_sum_f64(sums, 6);
    ss.loss_sum = sums[0];
    ss.items = (int)sums[1];
    ss.pairs = (int)sums[2];
    ss.correct = (int)sums[3];
    prompts = (int64_t)sums[4];
    truncated = (int64_t)sums[5];
    out->records = ss.items;
    out->loss = ss.items ? ss.loss_sum / ss.items : NAN;
    out->acc = ss.pairs ? (double)ss.correct / ss.pairs : NAN;
    out->prompts = prompts;
    out->truncated = truncated;
    out->skipped = t->eval_load_skipped + contradictions;
    return 0;
}

static json_t *num_or_null(double x) {
    return isfinite(x) ? json_real(x) : json_null();
}

static int log_eval(Trainer *t, const EvalResult *e, OprmError *err) {
    json_t *o = json_object();
    json_object_set_new(o, "step", json_integer(t->st.global_step));
    json_object_set_new(o, "eval_loss", num_or_null(e->loss));
    json_object_set_new(o, "eval_acc", num_or_null(e->acc));
    json_object_set_new(o, "eval_records", json_integer(e->records));
    json_object_set_new(o, "eval_truncated", json_integer(e->truncated));
    json_object_set_new(o, "eval_pairs_skipped", json_integer(e->skipped));
    progress_break(&t->bar);
    if (!t->cfg->quiet) {
        fprintf(stderr,
                "eval at step %lld: loss %.6f, pair accuracy %.4f (%d records of --eval-data; %lld of %lld "
                "scoring prompts truncated to %d tokens)",
                (long long)t->st.global_step, e->loss, e->acc, e->records, (long long)e->truncated,
                (long long)e->prompts, t->cfg->max_length);
        if (e->skipped)
            fprintf(stderr, "; %lld pairs left out (contradicting labels or identical texts, spec §3)",
                    (long long)e->skipped);
        fputc('\n', stderr);
    }
    return train_log_write(&t->log, o, err);
}

/* ---- setup ---- */

static int open_data(Trainer *t, OprmError *err) {
    const TrainConfig *c = t->cfg;
    size_t points = 0;
    for (int i = 0; i < c->n_data; i++) {
        DataReport rep;
        t->files[i] = data_open(c->data[i], &c->data_opt, &rep, err);
        if (!t->files[i]) return -1;
        if (!c->quiet) {
            /* Labelled, so that it is not taken for the --eval-data report below. */
            char label[1100];
            snprintf(label, sizeof label, "training data %s", c->data[i]);
            data_report_print(&rep, label, stderr);
        }
        t->load_contradicting += (int64_t)rep.by_reason[DATA_CONTRADICTION];
        t->load_identical += (int64_t)rep.by_reason[DATA_IDENTICAL];
        t->file_start[i] = t->total;
        t->total += data_count(t->files[i]);
        points += rep.by_kind[REC_POINT];
        t->best_of_n += (int64_t)rep.by_kind[REC_BEST_OF_N];
    }
    t->file_start[c->n_data] = t->total;
    if (points && (c->loss == TRAIN_LOSS_BT || !c->rgft_enabled))
        return oprm_fail(err, "the data holds %zu point-wise labelled responses, which only RgFT can train on; "
                         "use --loss oprm with --rgft-mode triangle or hard, or remove them", points);
    if (c->eval_data) {
        DataOptions eo = c->data_opt;
        DataReport rep;
        t->eval = data_open(c->eval_data, &eo, &rep, err);
        if (!t->eval) return oprm_prefix(err, "--eval-data: ");
        t->eval_load_skipped = (int64_t)(rep.by_reason[DATA_CONTRADICTION] + rep.by_reason[DATA_IDENTICAL]);
        t->best_of_n += (int64_t)rep.by_kind[REC_BEST_OF_N];
        /* Its own report: records skipped with --skip-invalid there are not silent either. */
        if (!c->quiet) {
            char label[1100];
            snprintf(label, sizeof label, "eval data (--eval-data) %s", c->eval_data);
            data_report_print(&rep, label, stderr);
        }
    }
    return 0;
}

static int output_has_run(const char *dir) {
    char *m = path_join(dir, CHECKPOINT_MANIFEST);
    int has = file_exists(m);
    free(m);
    char *latest = NULL;
    int64_t step;
    OprmError ignored;
    if (!has && checkpoint_find_latest(dir, &latest, &step, &ignored) == 1) has = 1;
    free(latest);
    return has;
}

/* Whether a model directory stores its weights in BF16: LoRA keeps the frozen
 * base in its stored precision. */
static int stored_as_bf16(const char *dir) {
    /* model.safetensors, or the first shard of a sharded checkpoint. */
    char *path = NULL;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && !path && (e = readdir(d)))
        if (!strcmp(e->d_name, "model.safetensors") || !strncmp(e->d_name, "model-00001-of-", 15))
            path = path_join(dir, e->d_name);
    if (d) closedir(d);
    int bf16 = 0;
    OprmError ignored;
    StFile *f = path ? st_open(path, &ignored) : NULL;
    if (f) {
        for (int i = 0; i < f->n_tensors; i++)
            if (f->tensors[i].ndim == 2) {
                bf16 = f->tensors[i].dtype == ST_BF16;
                break;
            }
        st_close(f);
    }
    free(path);
    return bf16;
}

static int lora_options(const TrainConfig *c, ModelOptions *mo, OprmError *err) {
    mo->lora_rank = c->lora_rank;
    mo->lora_alpha = c->lora_alpha > 0 ? c->lora_alpha : 2.0 * c->lora_rank;
    mo->lora_seed = c->seed;
    mo->frozen_storage = stored_as_bf16(c->model_dir) ? WEIGHTS_BF16 : WEIGHTS_F32;
    return train_lora_targets_parse(c->lora_targets, &mo->lora_targets, err);
}

/* A resumed run scores with the template it was trained with: the one in its
 * oprm.json, unless --template is given, which must then be the same. */
static int resume_template(Trainer *t, OprmError *err) {
    const OprmMeta *m = t->resume_meta;
    if (!t->cfg->template_path) {
        if (m->system_prompt) {
            free(t->tpl.system);
            t->tpl.system = xstrdup(m->system_prompt);
        }
        if (m->user_template) {
            free(t->tpl.user);
            t->tpl.user = xstrdup(m->user_template);
        }
        if (m->cue) {
            free(t->tpl.cue);
            t->tpl.cue = xstrdup(m->cue);
        }
        return 0;
    }
    int same = (!m->system_prompt || !strcmp(m->system_prompt, t->tpl.system)) &&
               (!m->user_template || !strcmp(m->user_template, t->tpl.user)) &&
               (!m->cue || !strcmp(m->cue, t->tpl.cue));
    if (!same)
        return oprm_fail(err, "--template %s contradicts the run being resumed: %s was trained with another scoring "
                         "template (the one in its oprm.json). Leave --template out when resuming",
                         t->cfg->template_path, t->resume_dir);
    return 0;
}

/* The most responses of one record: 2 (a pair), or the largest best-of-N set,
 * which only data holding such sets reads through for. */
static int64_t most_responses(Trainer *t) {
    int64_t most = 2;
    DataFile *files[TRAIN_MAX_DATA_FILES + 1];
    int n = 0;
    for (int i = 0; i < t->cfg->n_data; i++) files[n++] = t->files[i];
    if (t->eval) files[n++] = t->eval;
    for (int f = 0; f < n && t->best_of_n > 0; f++)
        for (size_t i = 0; i < data_count(files[f]); i++) {
            DataRecord rec;
            OprmError ignored;
            if (data_read(files[f], i, &rec, &ignored)) continue; /* reported when the loop reads it */
            if ((int64_t)rec.n_responses > most) most = (int64_t)rec.n_responses;
            record_free(&rec);
        }
    return most;
}

/* The training engine on the host model, once a resume has loaded the model
 * and the optimizer state: a device engine copies the weights when it is
 * built and receives the moments from the upload. */
static int create_engine(Trainer *t, OprmError *err) {
    TrainConfig *c = t->cfg;
    /* The most tokens of a micro-batch (or an eval batch): records x
     * responses x max_length; a device engine sizes its buffers by it. */
    int sized = c->device.kind != DEVICE_CPU || c->make_engine; /* the CPU engine grows to any batch */
    int64_t most = (int64_t)c->batch_size * (sized ? most_responses(t) : 2) * c->max_length;
    EngineOptions eo = {.device = c->device,
                        .threads = c->threads,
                        .max_tokens_per_batch = most > INT_MAX ? INT_MAX : (int)most,
                        .train = 1,
                        .recompute = c->gradient_checkpointing};
    t->engine = c->make_engine ? c->make_engine(c->engine_ctx, t->model, &eo, err)
                               : engine_from_model(t->model, &eo, err);
    if (!t->engine) return -1;
    t->on_host = engine_params_on_host(t->engine);
    if (!c->quiet) {
        fprintf(stderr, "oprm train: device %s\n", engine_describe(t->engine));
        if (c->gradient_checkpointing && engine_device(t->engine).kind == DEVICE_CPU)
            fprintf(stderr, "note: --gradient_checkpointing has no effect on the CPU (its engine keeps every "
                            "layer's activations for backward)\n");
    }
    if (t->on_host) return 0;
    char dev[32];
    device_str(engine_device(t->engine), dev, sizeof dev);
    if (train_device_check_ranks(dist_size(), dev, err) ||
        train_device_init(&t->dev, t->engine, t->params, t->np_model, t->opt, err))
        return -1;
    /* A resume loaded the checkpoint into the host image: onto the device. */
    if (t->resume_dir && train_device_upload(&t->dev, err)) return oprm_prefix(err, "--resume %s: ", t->resume_dir);
    return 0;
}

static int setup(Trainer *t, OprmError *err) {
    TrainConfig *c = t->cfg;
    ModelOptions mo = {0};
    if (c->lora_rank > 0 && lora_options(c, &mo, err) != 0) return -1;
    mo.bf16_compute = c->bf16;
    if (open_data(t, err)) return -1;
    t->tok = tok_load(c->model_dir, err);
    if (!t->tok) return oprm_prefix(err, "--model %s: ", c->model_dir);
    if (chat_format_choose(t->tok, c->chat_format, &t->format, err)) return -1;
    if (c->template_path) {
        if (scoring_template_load(c->template_path, &t->tpl, err)) return -1;
    } else {
        scoring_template_default(&t->tpl);
    }
    if (t->resume_meta && resume_template(t, err)) return -1;
    if (tok_digit_ids_after(t->tok, t->tpl.cue, t->digits, err)) return -1; /* after the template's own cue */
    t->setup.scoring = (ScoringConfig){.tok = t->tok, .format = t->format, .tpl = &t->tpl};
    t->setup.rgft_enabled = c->rgft_enabled;
    t->setup.rgft = c->rgft;
    t->setup.label_fraction = c->label_fraction;
    t->setup.seed = c->seed;

    const char *resume_dir = t->resume_dir;
    if (!resume_dir && !c->overwrite_output_dir && output_has_run(c->output_dir)) {
        return oprm_fail(err, "%s already holds a training run (checkpoints or a final model); pass --resume to "
                         "continue it, --overwrite_output_dir to start over, or choose another --output",
                         c->output_dir);
    }
    if (c->threads > 0) model_set_threads(c->threads);
    /* Full fine-tuning resumes from the checkpoint's fp32 weights; LoRA from
     * the base plus the checkpoint's fp32 adapter. */
    if (c->lora_rank > 0) {
        t->model = model_load(c->model_dir, &mo, err);
        if (t->model && resume_dir) {
            char *ad = path_join(resume_dir, LORA_ADAPTER_DIR);
            if (model_load_adapter(t->model, ad, err) != 0) {
                oprm_prefix(err, "--resume: ");
                model_free(t->model);
                t->model = NULL;
            }
            free(ad);
        }
    } else {
        t->model = model_load(resume_dir ? resume_dir : c->model_dir, &mo, err);
    }
    if (!t->model) return -1;
    const ModelConfig *mc = model_config(t->model);
    t->hidden = mc->hidden;
    if (max_length_resolve(c->max_length, 0, mc->max_pos, "--max_length", &c->max_length, err)) return -1;
    t->setup.scoring.max_len = (size_t)c->max_length;
    for (int k = 0; k < 9; k++)
        if (t->digits[k] >= mc->vocab) {
            return oprm_fail(err, "digit '%d' has token id %d outside the model's vocabulary (%d)", k + 1,
                             t->digits[k], mc->vocab);
        }
    int np;
    ModelParam *mp = model_params(t->model, &np);
    t->np_model = np;
    t->nparams = np + (c->loss == TRAIN_LOSS_BT);
    t->params = xcalloc((size_t)t->nparams, sizeof *t->params);
    memcpy(t->params, mp, (size_t)np * sizeof *mp);
    if (c->loss == TRAIN_LOSS_BT) {
        t->bt_w = xcalloc((size_t)t->hidden, sizeof *t->bt_w);
        t->bt_g = xcalloc((size_t)t->hidden, sizeof *t->bt_g);
        /* A fresh head like HF's score layer: normal(0, 0.02), from its own
         * seeded stream so the run's RNG is untouched. */
        Rng r;
        rng_seed(&r, c->seed ^ 0x62745f68656164ULL);
        for (int d = 0; d < t->hidden; d++) t->bt_w[d] = (float)(0.02 * rng_normal(&r));
        t->params[np] = (ModelParam){.name = BT_HEAD_TENSOR, .data = t->bt_w, .grad = t->bt_g,
                                     .numel = (size_t)t->hidden, .ndim = 2, .shape = {1, t->hidden}};
    }
    AdamWConfig ac = {c->adam_beta1, c->adam_beta2, c->adam_epsilon, c->weight_decay};
    train_dist_init(&t->dist, t->params, t->nparams, c->zero);
    t->opt = train_dist_new_opt(&t->dist, t->params, t->nparams, &ac);

    /* The global batch (TRL/accelerate): per-device batch x accumulation x ranks. */
    int64_t per_step = (int64_t)c->batch_size * c->grad_accum * dist_size();
    int64_t total = c->max_steps > 0 ? c->max_steps
                                     : (int64_t)ceil(c->num_train_epochs * (double)t->total / (double)per_step);
    if (total < 1) total = 1;
    t->sched = (Schedule){c->scheduler, schedule_warmup_steps(c->warmup_steps, c->warmup_ratio, total), total};

    if (resume_dir) {
        /* Checkpoints hold the whole optimizer state; a ZeRO rank keeps its shard. */
        AdamW *full = t->dist.zero ? adamw_new(t->params, t->nparams, &ac) : t->opt;
        int rc = checkpoint_load(resume_dir, &t->st, full, NULL, err);
        if (full != t->opt) {
            if (rc == 0) train_dist_take_shard(&t->dist, full, t->opt);
            adamw_free(full);
        }
        if (rc == 0 && t->bt_w) rc = load_bt_head(t, resume_dir, err);
        if (rc == 0 && t->st.data_count != t->total)
            rc = oprm_fail(err, "%s was trained on %zu records but --data now holds %zu; resume with the same data",
                           resume_dir, t->st.data_count, t->total);
        if (rc == 0 && t->st.seed != c->seed)
            rc = oprm_fail(err, "%s was trained with --seed %" PRIu64 "; resume with the same seed", resume_dir,
                           t->st.seed);
        if (rc == 0 && t->st.max_steps != total && !c->quiet)
            fprintf(stderr, "note: the checkpoint planned %lld steps, this run plans %lld (the schedule follows "
                            "the new plan)\n", (long long)t->st.max_steps, (long long)total);
        if (rc == 0 && t->st.extra) {
            t->truncated = json_integer_value(json_object_get(t->st.extra, "truncated"));
            t->contradictions = json_integer_value(json_object_get(t->st.extra, "contradictions_skipped"));
            t->tokens_total = json_integer_value(json_object_get(t->st.extra, "tokens"));
        }
        if (rc == 0 && !c->quiet)
            fprintf(stderr, "resuming from %s at step %lld\n", resume_dir, (long long)t->st.global_step);
        t->last_checkpoint = xstrdup(resume_dir);
        if (rc) return -1;
    } else {
        t->st.seed = c->seed;
        rng_seed(&t->st.rng, c->seed);
        t->st.data_order = xmalloc((t->total ? t->total : 1) * sizeof(int64_t));
        t->st.data_count = t->total;
        rng_permutation(&t->st.rng, t->st.data_order, t->total);
    }
    if (create_engine(t, err)) return -1;
    t->st.max_steps = total;
    if (dist_rank() != 0) { /* rank 0 alone writes the output directory */
        t->args = train_args_json(c);
        return 0;
    }
    if (make_dirs(c->output_dir, err)) return -1;
    OprmError ignored;
    checkpoint_cleanup_stale(c->output_dir, &ignored);
    if (train_log_open(&t->log, c->output_dir, TRAIN_LOG_FILE, resume_dir ? t->st.global_step : -1, err))
        return -1;
    t->args = train_args_json(c);
    return 0;
}

static void teardown(Trainer *t) {
    for (int i = 0; i < TRAIN_MAX_DATA_FILES; i++)
        if (t->files[i]) data_close(t->files[i]);
    if (t->eval) data_close(t->eval);
    adamw_free(t->opt);
    train_dist_free(&t->dist);
    free(t->params);
    free(t->bt_w);
    free(t->bt_g);
    train_device_free(&t->dev);
    engine_free(t->engine); /* before the model a CPU engine borrows */
    model_free(t->model);
    tok_free(t->tok);
    scoring_template_free(&t->tpl);
    trainer_state_free(&t->st);
    train_log_close(&t->log);
    free(t->last_checkpoint);
    if (t->args) json_decref(t->args);
}

/* ---- the loop ---- */

static void zero_grads(Trainer *t) {
    engine_zero_grad(t->engine);
    if (t->bt_g) memset(t->bt_g, 0, (size_t)t->hidden * sizeof *t->bt_g);
}

/* Builds the micro-batches of one optimizer step from the data stream. */
static int collect_step(Trainer *t, Stream *stream, MicroBatch *mbs, int *n_items, OprmError *err) {
    const TrainConfig *c = t->cfg;
    *n_items = 0;
    size_t skipped_in_row = 0;
    /* Data parallel: every rank walks the same stream; global micro-batch m
     * is the next batch_size x K accepted records and rank r trains on its
     * r-th block of batch_size, so K ranks see what one process with a K
     * times larger batch sees. Records of other ranks are only parsed, to
     * know whether they are skipped. */
    const int nranks = dist_size(), me = dist_rank();
    for (int m = 0; m < c->grad_accum; m++) {
        micro_batch_clear(&mbs[m]);
        for (int filled = 0; filled < c->batch_size * nranks;) {
            int64_t idx = stream_next(stream, t->total);
            DataRecord rec;
            char where[512];
            if (read_record(t, idx, &rec, where, sizeof where, err)) return -1;
            int added = filled / c->batch_size == me ? micro_batch_add(&mbs[m], &t->setup, &rec, idx, where, err)
                                                     : batch_record_contradicts(&rec);
            record_free(&rec);
            if (added < 0) return -1;
            if (added == 1) {
                if (!c->quiet)
                    fprintf(stderr, "%s%s: skipped: the labels contradict the preference (spec §3)\n",
                            t->progress ? "\n" : "", where);
                if (++skipped_in_row > t->total)
                    return oprm_fail(err, "every record is skipped (labels contradict the preferences)");
                continue;
            }
            skipped_in_row = 0;
            filled++;
        }
        *n_items += mbs[m].n_items;
    }
    return 0;
}

/* Builds the next step's batches in a second thread while the engine runs
 * the current step (--dataloader_num_workers >= 1). It only reads the data
 * files and the tokenizer and writes its own stream copy and batches. */
typedef struct {
    Trainer *t;
    MicroBatch *mbs;
    int n_items;
    Stream stream;
    int rc;
    double seconds;
    OprmError err;
    pthread_t thread;
    int running;
} Prefetch;

static void *prefetch_main(void *arg) {
    Prefetch *p = arg;
    double t0 = now_s();
    p->rc = collect_step(p->t, &p->stream, p->mbs, &p->n_items, &p->err);
    p->seconds = now_s() - t0;
    return NULL;
}

static void prefetch_start(Prefetch *p, Trainer *t) {
    p->t = t;
    p->stream = stream_from_state(&t->st);
    p->rc = 0;
    p->running = pthread_create(&p->thread, NULL, prefetch_main, p) == 0;
    if (!p->running) prefetch_main(p); /* no thread: build it here */
}

static void prefetch_join(Prefetch *p) {
    if (p->running) pthread_join(p->thread, NULL);
    p->running = 0;
}

static int stop_on_bad_loss(Trainer *t, MicroBatch *mbs, int m, int bad, const char *what, OprmError *err) {
    StrBuf ids = {0};
    if (bad >= 0) {
        sb_puts(&ids, mbs[m].items[bad].id);
    } else {
        for (int k = 0; k <= m; k++)
            for (int i = 0; i < mbs[k].n_items; i++) {
                if (ids.n) sb_puts(&ids, ", ");
                sb_puts(&ids, mbs[k].items[i].id);
            }
    }
    oprm_fail(err, "step %lld: %s (records: %s); stopped without applying this step. The weights were not "
              "updated; the last good checkpoint is %s. Try a lower --learning_rate or check those records",
              (long long)t->st.global_step + 1, what, ids.s ? ids.s : "?",
              t->last_checkpoint ? t->last_checkpoint : "(none saved yet)");
    sb_free(&ids);
    return -1;
}

/* --resume: which checkpoint to continue from, with the run's settings put
 * into c (train_args_resume). A run that has already trained every planned
 * step sets *finished_step instead (and *dir stays NULL): nothing is to be
 * done and nothing may change. "latest" looks at the final model in OUTPUT
 * first: it holds no optimizer state, so training past it needs the
 * checkpoint of the same step. */
static int prepare_resume(TrainConfig *c, OprmMeta *meta, char **dir, int64_t *finished_step, OprmError *err) {
    *dir = NULL;
    *finished_step = -1;
    if (!c->output_dir) return oprm_fail(err, "--output DIR is required (the run to resume)");
    char *cand = NULL;
    int cand_final = 0;
    OprmError ignored;
    if (!strcmp(c->resume, "latest")) {
        char *st = path_join(c->output_dir, TRAINER_STATE_FILE);
        if (file_exists(st) && checkpoint_verify(c->output_dir, 0, &ignored) == 0) {
            cand = xstrdup(c->output_dir);
            cand_final = 1;
        }
        free(st);
        if (!cand && !(cand = checkpoint_resolve_resume(c->output_dir, "latest", err))) return -1;
    } else if (!(cand = checkpoint_resolve_resume(c->output_dir, c->resume, err))) {
        return -1;
    }
    char *mp = path_join(cand, OPRM_META_FILE);
    int rc = oprm_meta_read(mp, meta, err);
    free(mp);
    if (rc == 0) rc = train_args_resume(c, meta, cand, err);
    TrainerState st = {0};
    char *sp = path_join(cand, TRAINER_STATE_FILE);
    if (rc == 0) rc = trainer_state_read(sp, &st, err);
    free(sp);
    if (rc) {
        free(cand);
        return -1;
    }
    int64_t per_step = (int64_t)(c->batch_size > 0 ? c->batch_size : 1) * (c->grad_accum > 0 ? c->grad_accum : 1) *
                       dist_size();
    int64_t total = c->max_steps > 0 ? c->max_steps
                                     : (int64_t)ceil(c->num_train_epochs * (double)st.data_count / (double)per_step);
    if (total < 1) total = 1;
    int64_t step = st.global_step;
    trainer_state_free(&st);
    if (step >= total) {
        fprintf(stderr, "%s has already finished: it is at step %lld of %lld planned steps. Nothing was trained and "
                        "nothing in %s was changed (give a larger --max_steps or --num_train_epochs to train it "
                        "further)\n", cand, (long long)step, (long long)total, c->output_dir);
        *finished_step = step;
        free(cand);
        return 0;
    }
    if (cand_final) {
        char *ck = NULL;
        int64_t ck_step = -1;
        int found = checkpoint_find_latest(c->output_dir, &ck, &ck_step, &ignored);
        free(cand);
        if (found == 1 && ck_step == step) {
            *dir = ck;
            return 0;
        }
        free(ck);
        return oprm_fail(err, "%s holds a final model at step %lld; training it further (to step %lld) needs "
                         "checkpoint-%lld with its optimizer state, which %s does not hold. Resume from an earlier "
                         "checkpoint with --resume DIR (it redoes the later steps) or start over with "
                         "--overwrite_output_dir", c->output_dir, (long long)step, (long long)total,
                         (long long)step, c->output_dir);
    }
    *dir = cand;
    return 0;
}

int train_run(const TrainConfig *cfg_in, TrainResult *result, OprmError *err) {
    TrainResult res;
    memset(&res, 0, sizeof res);
    res.first_loss = res.last_loss = NAN;
    res.eval_loss_start = res.eval_loss_end = res.eval_acc_start = res.eval_acc_end = NAN;
    /* A copy: a resume fills it from the run, setup resolves max_length. */
    TrainConfig cfg_copy = *cfg_in;
    TrainConfig *cfg = &cfg_copy;
    if (dist_rank() != 0) { /* rank 0 alone talks to the terminal (reports, step lines, bar) */
        cfg->quiet = 1;
        cfg->progress = 0;
    }
    OprmMeta resume_meta = {0};
    char *resume_dir = NULL;
    int64_t finished_step = -1;
    if (cfg->resume && prepare_resume(cfg, &resume_meta, &resume_dir, &finished_step, err)) {
        oprm_meta_free(&resume_meta);
        if (result) *result = res;
        return 1;
    }
    if (finished_step >= 0 || train_config_check(cfg, err)) {
        oprm_meta_free(&resume_meta);
        res.steps = finished_step >= 0 ? finished_step : 0;
        if (result) *result = res;
        return finished_step >= 0 ? 0 : 1;
    }
    Trainer t;
    memset(&t, 0, sizeof t);
    t.cfg = cfg;
    t.resume_dir = resume_dir;
    t.resume_meta = resume_dir ? &resume_meta : NULL;
    t.progress = cfg->progress < 0 ? isatty(STDERR_FILENO) : cfg->progress;
    int status = 1;
    int64_t tokens_here = 0;
    double tok_time = 0, wait_time = 0, engine_time = 0, step_time_total = 0;
    MicroBatch *mbs = xcalloc((size_t)cfg->grad_accum, sizeof *mbs);
    Prefetch pf;
    memset(&pf, 0, sizeof pf);
    pf.mbs = xcalloc((size_t)cfg->grad_accum, sizeof *pf.mbs);
    int have_next = 0;
    interrupt_install();
    if (dist_agree(setup(&t, err), err)) goto done;

    EvalResult ev;
    if (t.eval && t.st.global_step == 0) {
        if (evaluate(&t, &ev, err) || log_eval(&t, &ev, err)) goto done;
        res.eval_loss_start = ev.loss;
        res.eval_acc_start = ev.acc;
    }
    double log_loss = 0, log_acc_pairs = 0, log_acc_correct = 0;
    int64_t log_count = 0, steps_here = 0;
    int64_t saved_step = -1;
    /* Gradients are cleared here once, then by the optimizer step itself
     * (adamw_step_zero_grad), which saves a pass over every gradient per step. */
    zero_grads(&t);
    progress_start_at(&t.bar, "steps", (size_t)t.sched.total_steps, (size_t)t.st.global_step, t.progress);
    while (t.st.global_step < t.sched.total_steps) {
        double s0 = now_s();
        int n_items, brc = 0;
        if (have_next) {
            /* The prefetched batches; the stream moves to after them. */
            prefetch_join(&pf);
            have_next = 0;
            wait_time += now_s() - s0;
            tok_time += pf.seconds;
            if (pf.rc) {
                stream_discard(&pf.stream);
                brc = oprm_fail(err, "%s", pf.err.msg);
            }
            if (dist_agree(brc, err)) goto done;
            stream_adopt(&t.st, &pf.stream);
            MicroBatch *tmp = mbs;
            mbs = pf.mbs;
            pf.mbs = tmp;
            n_items = pf.n_items;
        } else {
            Stream stream = stream_from_state(&t.st);
            int rc = dist_agree(collect_step(&t, &stream, mbs, &n_items, err), err);
            if (rc) {
                stream_discard(&stream);
                goto done;
            }
            stream_adopt(&t.st, &stream);
            tok_time += now_s() - s0;
            wait_time += now_s() - s0;
        }
        if (cfg->dataloader_num_workers > 0 && t.st.global_step + 1 < t.sched.total_steps) {
            prefetch_start(&pf, &t);
            have_next = 1;
        }
        StepStats ss = {0};
        int64_t step_tokens = 0, step_trunc = 0, step_contra = 0;
        /* Every rank holds n_items of the step's n_items x K records: the
         * gradient of the global mean loss is the sum of the ranks' parts. */
        double scale = 1.0 / ((double)n_items * dist_size());
        int mrc = 0;
        for (int m = 0; m < cfg->grad_accum && !mrc; m++) {
            int bad;
            mrc = run_micro_batch(&t, &mbs[m], 1, scale, &ss, &bad, err);
            if (!mrc && bad >= 0) mrc = stop_on_bad_loss(&t, mbs, m, bad, "the loss is NaN or infinite", err);
            step_tokens += mbs[m].tokens;
            step_trunc += mbs[m].truncated;
            step_contra += mbs[m].contradictions;
        }
        if (dist_agree(mrc, err)) goto done;
        if (dist_size() > 1) { /* the step's metrics over every rank */
            double sums[7] = {ss.loss_sum, ss.items, ss.pairs, ss.correct, step_tokens, step_trunc, step_contra};
            dist_allreduce_sum_f64(sums, 7);
            ss.loss_sum = sums[0];
            ss.items = (int)sums[1];
            ss.pairs = (int)sums[2];
            ss.correct = (int)sums[3];
            step_tokens = (int64_t)sums[4];
            step_trunc = (int64_t)sums[5];
            step_contra = (int64_t)sums[6];
        }
        double loss = ss.loss_sum / ss.items;
        /* Host parameters: the gradients summed over ranks and clipped in
         * place. A device engine: the norm from it, the clip factor given to
         * its AdamW step (the BT head, on the host, is clipped here). */
        double grad_norm, clip = 1.0;
        ModelParam *host = t.params + t.np_model; /* the BT head, if any */
        int nhost = t.nparams - t.np_model;
        if (t.on_host) {
            if (cfg->grad_hook) cfg->grad_hook(cfg->hook_ctx, t.st.global_step + 1, t.params, t.nparams);
            grad_norm = train_dist_grads(&t.dist, t.params, t.nparams, cfg->max_grad_norm);
        } else if (train_device_grads(&t.dev, host, nhost, cfg->max_grad_norm, &grad_norm, &clip, err)) {
            goto done;
        }
        if (!isfinite(loss) || !isfinite(grad_norm)) {
            stop_on_bad_loss(&t, mbs, cfg->grad_accum - 1, -1,
                             isfinite(loss) ? "the gradient norm is NaN or infinite" : "the loss is NaN or infinite",
                             err);
            goto done;
        }
        double lr = schedule_lr(&t.sched, cfg->learning_rate, t.st.global_step);
        if (t.on_host ? train_dist_step(&t.dist, t.opt, t.params, t.nparams, lr, err)
                      : train_device_step(&t.dev, t.opt, host, nhost, lr, clip, err))
            goto done;
        t.st.global_step++;
        trainer_state_push_loss(&t.st, loss);
        t.truncated += step_trunc;
        t.contradictions += step_contra;
        t.tokens_total += step_tokens;
        double s2 = now_s();
        engine_time += ss.engine_s;
        step_time_total += s2 - s0;
        steps_here++;
        tokens_here += step_tokens;
        if (steps_here == 1) res.first_loss = loss;
        res.last_loss = loss;
        double tps = (double)step_tokens / (s2 - s0);
        log_loss += loss;
        log_acc_pairs += ss.pairs;
        log_acc_correct += ss.correct;
        log_count++;
        if (t.st.global_step % cfg->logging_steps == 0 || t.st.global_step == t.sched.total_steps) {
            double epoch = (double)t.st.epoch + (double)t.st.data_position / (double)(t.total ? t.total : 1);
            json_t *o = json_object();
            json_object_set_new(o, "step", json_integer(t.st.global_step));
            json_object_set_new(o, "epoch", json_real(epoch));
            json_object_set_new(o, "loss", json_real(log_loss / log_count));
            json_object_set_new(o, "acc", num_or_null(log_acc_pairs ? log_acc_correct / log_acc_pairs : NAN));
            json_object_set_new(o, "lr", json_real(lr));
            json_object_set_new(o, "grad_norm", json_real(grad_norm));
            json_object_set_new(o, "tokens_per_s", json_real(tps));
            json_object_set_new(o, "tokens", json_integer(step_tokens));
            json_object_set_new(o, "truncated", json_integer(t.truncated));
            json_object_set_new(o, "contradictions_skipped", json_integer(t.contradictions));
            if (train_log_write(&t.log, o, err)) goto done;
            double avg_tps = (double)tokens_here / step_time_total;
            if (t.progress) {
                progress_note(&t.bar, "loss %.4f  acc %.3f  %.0f tok/s", log_loss / log_count,
                              log_acc_pairs ? log_acc_correct / log_acc_pairs : 0, avg_tps);
                progress_update(&t.bar, (size_t)t.st.global_step);
            } else if (!cfg->quiet)
                fprintf(stderr, "step %lld/%lld  loss %.6f  acc %.3f  lr %.3g  grad_norm %.4g  %.0f tok/s  "
                                "truncated %lld\n", (long long)t.st.global_step, (long long)t.sched.total_steps,
                        log_loss / log_count, log_acc_pairs ? log_acc_correct / log_acc_pairs : 0, lr, grad_norm,
                        avg_tps, (long long)t.truncated);
            log_loss = log_acc_pairs = log_acc_correct = 0;
            log_count = 0;
        }
        if (t.eval && cfg->eval_steps > 0 && t.st.global_step % cfg->eval_steps == 0 &&
            t.st.global_step < t.sched.total_steps) {
            if (evaluate(&t, &ev, err) || log_eval(&t, &ev, err)) goto done;
        }
        if (cfg->save_steps > 0 && t.st.global_step % cfg->save_steps == 0) {
            if (save_checkpoint(&t, 0, err)) goto done;
            saved_step = t.st.global_step;
        }
        int sig = interrupt_requested();
        if (!sig && cfg->hook && cfg->hook(cfg->hook_ctx, t.st.global_step, t.model)) sig = SIGINT;
        if (!sig) sig = interrupt_requested();
        sig = (int)dist_agree_stop(sig); /* all ranks stop at the same step, or none */
        if (sig) {
            progress_break(&t.bar);
            if (saved_step != t.st.global_step && save_checkpoint(&t, 0, err)) goto done;
            if (dist_rank() == 0)
                fprintf(stderr, "interrupted at step %lld: saved %s; continue with --resume\n",
                    (long long)t.st.global_step, t.last_checkpoint);
            interrupt_clear();
            res.interrupted = sig;
            status = interrupt_exit_code(sig);
            goto done;
        }
    }
    progress_break(&t.bar);
    if (t.eval) {
        if (evaluate(&t, &ev, err) || log_eval(&t, &ev, err)) goto done;
        res.eval_loss_end = ev.loss;
        res.eval_acc_end = ev.acc;
    }
    if (save_checkpoint(&t, 1, err)) {
        oprm_prefix(err, "saving the final model: ");
        goto done;
    }
    res.tokens_per_s = step_time_total > 0 ? (double)tokens_here / step_time_total : 0;
    {
        json_t *o = json_object();
        json_object_set_new(o, "step", json_integer(t.st.global_step));
        json_object_set_new(o, "summary", json_true());
        json_object_set_new(o, "final_loss", num_or_null(res.last_loss));
        json_object_set_new(o, "truncated", json_integer(t.truncated));
        json_object_set_new(o, "contradictions_skipped", json_integer(t.contradictions));
        json_object_set_new(o, "tokens_per_s", json_real(res.tokens_per_s));
        json_object_set_new(o, "engine_tokens_per_s", json_real(engine_time > 0 ? tokens_here / engine_time : 0));
        json_object_set_new(o, "tokenize_s", json_real(tok_time));
        json_object_set_new(o, "data_wait_s", json_real(wait_time));
        json_object_set_new(o, "step_s", json_real(step_time_total));
        json_object_set_new(o, "pairs_skipped_at_load", json_pack("{s:I, s:I}", "labels_contradict",
                                                                  (json_int_t)t.load_contradicting, "identical",
                                                                  (json_int_t)t.load_identical));
        json_object_set_new(o, "ranks", json_integer(dist_size()));
        json_object_set_new(o, "comm_s", json_real(t.dist.comm_s));
        json_object_set_new(o, "comm_wait_s", json_real(t.dist.wait_s));
        json_object_set_new(o, "optimizer_bytes_per_rank", json_integer((json_int_t)train_dist_opt_bytes(t.opt)));
        if (train_log_write(&t.log, o, err)) goto done;
    }
    if (!cfg->quiet)
        fprintf(stderr,
                "done: %lld steps, final loss %.6f; %lld scoring prompts truncated to %d tokens (training data), %lld pairs "
                "skipped (contradicting labels; left out of --data: %lld contradicting, %lld identical chosen and "
                "rejected); %.0f tokens/s (engine alone %.0f tokens/s; building prompts "
                "took %.1f%% of the step time, the engine waited for data %.1f%%); model saved to %s\n",
                (long long)t.st.global_step, res.last_loss, (long long)t.truncated, cfg->max_length,
                (long long)t.contradictions, (long long)t.load_contradicting, (long long)t.load_identical,
                res.tokens_per_s, engine_time > 0 ? tokens_here / engine_time : 0,
                step_time_total > 0 ? 100 * tok_time / step_time_total : 0,
                step_time_total > 0 ? 100 * wait_time / step_time_total : 0, cfg->output_dir);
    status = 0;
done:
    if (have_next) {
        prefetch_join(&pf);
        stream_discard(&pf.stream);
    }
    for (int m = 0; m < cfg->grad_accum; m++) micro_batch_free(&pf.mbs[m]);
    free(pf.mbs);
    res.tokenize_s = tok_time;
    res.wait_s = wait_time;
    res.step_s = step_time_total;
    res.tokens = tokens_here;
    res.engine_s = engine_time;
    res.steps = t.st.global_step;
    res.truncated = t.truncated;
    res.contradictions = t.contradictions;
    progress_break(&t.bar);
    interrupt_uninstall();
    for (int m = 0; m < cfg->grad_accum; m++) micro_batch_free(&mbs[m]);
    free(mbs);
    teardown(&t);
    free(resume_dir);
    oprm_meta_free(&resume_meta);
    if (result) *result = res;
    return status;
}
