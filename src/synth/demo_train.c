#include "synth/demo_train.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/fileio.h"
#include "model/model.h"
#include "ordinal/ordinal.h"
#include "ordinal/rgft.h"
#include "synth/task.h"
#include "tok/prompt.h"
#include "train/adamw.h"
#include "train/oprm_meta.h"
#include "train/schedule.h"

void demo_train_default_options(DemoTrainOptions *o) {
    memset(o, 0, sizeof *o);
    o->steps = 800;
    o->batch = 16;
    o->lr = 5e-3;
    o->beta2 = 0.95;
    o->max_grad_norm = 1.0;
    o->warmup = 50;
    o->label_fraction = 0.5;
    o->seed = 1;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct {
    IdVec chosen, rejected;
    OprmLabel label_c, label_r;
} TrainPair;

static void pairs_free(TrainPair *p, int n) {
    for (int i = 0; i < n; i++) {
        idvec_free(&p[i].chosen);
        idvec_free(&p[i].rejected);
    }
    free(p);
}

static int build_side(const ScoringSetup *s, const Conversation *c, const char *resp, IdVec *out, OprmError *err) {
    ScoringPrompt sp = {0};
    if (scoring_build(&s->cfg, c, resp, &sp, err)) return -1;
    idvec_extend(out, sp.ids.v, sp.ids.n);
    scoring_prompt_free(&sp);
    return 0;
}

/* Reads up to max pairs and builds their scoring prompts. */
static TrainPair *load_pairs(const char *path, const ScoringSetup *s, int max, const DemoTrainOptions *o,
                             int *n_out, int *n_labelled, OprmError *err) {
    FILE *f = fopen(path, "r");
    if (!f) {
        oprm_fail(err, "%s: cannot open", path);
        return NULL;
    }
    SynthRng rng;
    synth_rng_seed(&rng, o->seed * 8 + 7);
    TrainPair *p = xcalloc((size_t)max, sizeof *p);
    char *line = NULL;
    size_t cap = 0;
    int n = 0, rc = 0;
    *n_labelled = 0;
    while (n < max && getline(&line, &cap, f) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        const char *prompt = json_string_value(json_object_get(j, "prompt"));
        const char *chosen = json_string_value(json_object_get(j, "chosen"));
        const char *rejected = json_string_value(json_object_get(j, "rejected"));
        if (!prompt || !chosen || !rejected) {
            json_decref(j);
            rc = oprm_fail(err, "%s:%d: needs string fields prompt, chosen and rejected", path, n + 1);
            break;
        }
        Conversation c = {0};
        conv_push(&c, ROLE_USER, prompt, strlen(prompt));
        rc = build_side(s, &c, chosen, &p[n].chosen, err);
        if (!rc) rc = build_side(s, &c, rejected, &p[n].rejected, err);
        conv_free(&c);
        if (!rc && synth_rng_uniform(&rng) < o->label_fraction) {
            rc = rgft_parse_label(json_string_value(json_object_get(j, "chosen_label")), &p[n].label_c, err);
            if (!rc) rc = rgft_parse_label(json_string_value(json_object_get(j, "rejected_label")), &p[n].label_r, err);
            if (!rc && rgft_labels_contradict(&p[n].label_c, &p[n].label_r)) {
                p[n].label_c.kind = p[n].label_r.kind = OPRM_LABEL_NONE; /* spec §3: never trained on */
            }
            *n_labelled += p[n].label_c.kind != OPRM_LABEL_NONE;
        }
        json_decref(j);
        n++;
        if (rc) {
            oprm_prefix(err, "%s:%d: ", path, n);
            break;
        }
    }
    free(line);
    fclose(f);
    if (!rc && n == 0) rc = oprm_fail(err, "%s: no pairs", path);
    if (rc) {
        pairs_free(p, n);
        return NULL;
    }
    *n_out = n;
    return p;
}

static int write_meta(const char *model_dir, const ScoringSetup *s, const DemoTrainOptions *o, OprmError *err) {
    OprmMeta meta = {0};
    meta.head = "oprm";
    meta.chat_format = (char *)chat_format_name(s->cfg.format);
    meta.system_prompt = s->tpl->system;
    meta.user_template = s->tpl->user;
    meta.cue = s->tpl->cue;
    memcpy(meta.digit_ids, s->digits, sizeof meta.digit_ids);
    meta.training_args = json_pack("{s:s, s:i, s:i, s:f, s:f, s:f, s:i, s:f, s:s}", "trainer", "oprm demo", "max_steps",
                                   o->steps, "per_device_train_batch_size", o->batch, "learning_rate", o->lr,
                                   "adam_beta2", o->beta2, "max_grad_norm", o->max_grad_norm, "warmup_steps",
                                   o->warmup, "label_fraction", o->label_fraction, "rgft_mode", "triangle");
    char *path = path_join(model_dir, OPRM_META_FILE);
    int rc = oprm_meta_write(&meta, path, err);
    free(path);
    json_decref(meta.training_args);
    return rc;
}

int demo_train(const char *model_dir, const char *pairs_path, const DemoTrainOptions *o, DemoTrainResult *res,
               OprmError *err) {
    memset(res, 0, sizeof *res);
    if (o->steps <= 0 || o->batch <= 0) return oprm_fail(err, "demo training: steps and batch must be positive");
    Tokenizer *tok = tok_load(model_dir, err);
    if (!tok) return -1;
    ScoringSetup s;
    if (scoring_setup(&s, tok, NULL, o->template_path, 0, err)) {
        tok_free(tok);
        return -1;
    }
    int n_pairs = 0, n_labelled = 0;
    TrainPair *pairs = load_pairs(pairs_path, &s, o->steps * o->batch, o, &n_pairs, &n_labelled, err);
    Model *m = pairs ? model_load(model_dir, NULL, err) : NULL;
    int rc = m ? 0 : -1;
    int hidden = m ? model_config(m)->hidden : 0, nseq = 2 * o->batch;
    int np = 0;
    ModelParam *params = m ? model_params(m, &np) : NULL;
    AdamWConfig ac = {0.9, o->beta2, 1e-8, o->weight_decay};
    AdamW *opt = m ? adamw_new(params, np, &ac) : NULL;
    Schedule sched = {SCHED_COSINE, o->warmup, o->steps};
    RgftConfig rg = rgft_default_config();
    float *h = xmalloc(sizeof(float) * (size_t)(hidden ? hidden : 1) * (size_t)nseq);
    float *dh = xmalloc(sizeof(float) * (size_t)(hidden ? hidden : 1) * (size_t)nseq);
    float *logits = xmalloc(sizeof(float) * 9 * (size_t)nseq), *dlogits = xmalloc(sizeof(float) * 9 * (size_t)nseq);
    int32_t *lens = xmalloc(sizeof(int32_t) * (size_t)nseq);
    IdVec ids = {0};
    double t0 = now_s(), recent_loss = 0, recent_acc = 0;
    long tokens = 0;
    int recent = 0;
    for (int step = 0; !rc && step < o->steps; step++) {
        ids.n = 0;
        for (int i = 0; i < o->batch; i++) {
            TrainPair *p = &pairs[(step * o->batch + i) % n_pairs];
            idvec_extend(&ids, p->chosen.v, p->chosen.n);
            idvec_extend(&ids, p->rejected.v, p->rejected.n);
            lens[2 * i] = (int32_t)p->chosen.n;
            lens[2 * i + 1] = (int32_t)p->rejected.n;
        }
        tokens += (long)ids.n;
        SeqBatch b = {ids.v, lens, nseq};
        if ((rc = model_forward(m, &b, 1, h, err))) break;
        model_head_rows_forward(m, h, nseq, s.digits, 9, logits);
        double loss_sum = 0;
        int correct = 0;
        for (int i = 0; i < o->batch && !rc; i++) {
            TrainPair *p = &pairs[(step * o->batch + i) % n_pairs];
            double zc[9], zr[9], gc[9], gr[9], wc[9], wr[9], loss;
            for (int k = 0; k < 9; k++) {
                zc[k] = logits[2 * i * 9 + k];
                zr[k] = logits[(2 * i + 1) * 9 + k];
            }
            rc = rgft_landscape(&p->label_c, &rg, wc, err);
            if (!rc) rc = rgft_landscape(&p->label_r, &rg, wr, err);
            if (!rc) rc = rgft_pair_loss(zc, wc, zr, wr, &loss, gc, gr, err);
            if (rc) break;
            loss_sum += loss;
            for (int k = 0; k < 9; k++) {
                dlogits[2 * i * 9 + k] = (float)(gc[k] / o->batch);
                dlogits[(2 * i + 1) * 9 + k] = (float)(gr[k] / o->batch);
            }
            OrdinalDist dc, dr;
            ScoreStats sc, sr;
            if (ordinal_dist_from_logits(zc, &dc, err) || ordinal_dist_from_logits(zr, &dr, err)) {
                rc = -1;
                break;
            }
            ordinal_stats(&dc, &sc);
            ordinal_stats(&dr, &sr);
            correct += sc.mean > sr.mean;
        }
        if (rc) break;
        double loss = loss_sum / o->batch;
        if (!isfinite(loss)) {
            rc = oprm_fail(err, "demo training: the loss became %g at step %d", loss, step + 1);
            break;
        }
        memset(dh, 0, sizeof(float) * (size_t)hidden * (size_t)nseq);
        model_head_rows_backward(m, h, nseq, s.digits, 9, dlogits, dh);
        if ((rc = model_backward(m, dh, err))) break;
        clip_grad_norm(params, np, o->max_grad_norm);
        if ((rc = adamw_step(opt, params, np, schedule_lr(&sched, o->lr, step), err))) break;
        model_zero_grad(m);
        if (step >= o->steps - 50) {
            recent_loss += loss;
            recent_acc += (double)correct / o->batch;
            recent++;
        }
        if (o->progress && ((step + 1) % 50 == 0 || step + 1 == o->steps)) {
            double el = now_s() - t0;
            fprintf(o->progress, "  step %4d/%d  loss %.3f  batch accuracy %.2f  %6.0f tokens/s  %3.0f s left\n",
                    step + 1, o->steps, loss, (double)correct / o->batch, tokens / el,
                    el / (step + 1) * (o->steps - step - 1));
            fflush(o->progress);
        }
    }
    if (!rc) {
        res->steps = o->steps;
        res->pairs_used = n_pairs;
        res->labelled_pairs = n_labelled;
        res->seconds = now_s() - t0;
        res->tokens_per_s = tokens / res->seconds;
        res->final_loss = recent ? recent_loss / recent : 0;
        res->final_batch_accuracy = recent ? recent_acc / recent : 0;
        rc = model_save(m, model_dir, err);
        if (!rc) rc = write_meta(model_dir, &s, o, err);
    }
    idvec_free(&ids);
    free(lens);
    free(h);
    free(dh);
    free(logits);
    free(dlogits);
    if (opt) adamw_free(opt);
    model_free(m);
    if (pairs) pairs_free(pairs, n_pairs);
    scoring_setup_free(&s);
    tok_free(tok);
    return rc;
}
