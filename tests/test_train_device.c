/* One trainer, two engines (issue 14): the trainer's device-parameter path,
 * proved on the CPU with a simulated device (tests/engine_sim.h: its own
 * weights and moments; grad_sqnorm, adamw_step, download, upload).
 *
 *  - the sim path gives the host path's run bit for bit (tolerance 0): every
 *    train_log line (loss, accuracy, lr, grad_norm; eval loss and accuracy at
 *    the start and the end), the loss history and the final files, for full
 *    fine-tuning with eval data, LoRA, gradient accumulation with clipping
 *    active, and the BT loss (head on the host) with weight decay + warmup;
 *  - checkpoint + resume on the sim is exact (losses, final weights, BT head);
 *  - the same comparisons catch a sim whose download or upload is a no-op;
 *  - a NaN stops cleanly (step, records, the last good checkpoint, whose
 *    weights are the host path's);
 *  - data parallel with device parameters is refused, naming the device;
 *  - the CLI: --device cuda accepted by the option table and refused at
 *    setup where the engine cannot train (naming the device and --device
 *    cpu, nothing written); --gradient_checkpointing recorded in oprm.json,
 *    taken back on resume, and noted as without effect on the CPU.
 * Tiny random model, no shared data. */
#include <jansson.h>

#include "engine_sim.h"
#include "train/checkpoint.h"
#include "train/oprm_meta.h"
#include "train/train_args.h"
#include "train/train_device.h"
#include "train/trainer_state.h"
#include "train_testutil.h"
#include "util/vec.h"

static char tmp_dir[] = "/tmp/oprm_test_train_device_XXXXXX";
static char model[600], data[600], ldata[600], edata[600];

static char *tmp(const char *name) {
    return path_join(tmp_dir, name);
}

static char *slurp(const char *dir, const char *name, size_t *len) {
    char *p = path_join(dir, name);
    OprmError err;
    char *d = read_file(p, len, &err);
    free(p);
    return d;
}

/* 1 when dir/name exists in both and is byte-identical. */
static int same_file(const char *a, const char *b, const char *name) {
    size_t sa = 0, sb = 0;
    char *fa = slurp(a, name, &sa), *fb = slurp(b, name, &sb);
    int same = fa && fb && sa == sb && !memcmp(fa, fb, sa);
    free(fa);
    free(fb);
    return same;
}

/* train_log.jsonl without the timing fields (tokens_per_s and the summary). */
static char *log_of(const char *dir) {
    char *p = path_join(dir, TRAIN_LOG_FILE);
    FILE *f = fopen(p, "r");
    free(p);
    StrBuf sb = {0};
    char line[8192];
    while (f && fgets(line, sizeof line, f)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!o) continue;
        if (!json_object_get(o, "summary")) {
            json_object_del(o, "tokens_per_s");
            char *s = json_dumps(o, JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
            sb_puts(&sb, s);
            sb_puts(&sb, "\n");
            free(s);
        }
        json_decref(o);
    }
    if (f) fclose(f);
    return sb.s ? sb.s : xstrdup("");
}

/* The largest logged grad_norm (clipping is active when it exceeds max_grad_norm). */
static double max_grad_norm_logged(const char *dir) {
    char *p = path_join(dir, TRAIN_LOG_FILE);
    FILE *f = fopen(p, "r");
    free(p);
    double most = 0;
    char line[8192];
    while (f && fgets(line, sizeof line, f)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        json_t *g = o ? json_object_get(o, "grad_norm") : NULL;
        if (json_is_number(g) && json_number_value(g) > most) most = json_number_value(g);
        if (o) json_decref(o);
    }
    if (f) fclose(f);
    return most;
}

static double *losses_of(const char *dir, size_t *n) {
    char *p = path_join(dir, TRAINER_STATE_FILE);
    TrainerState st;
    OprmError err = {{0}};
    int rc = trainer_state_read(p, &st, &err);
    free(p);
    *n = 0;
    if (rc) return NULL;
    double *l = malloc((st.loss_count + 1) * sizeof *l);
    memcpy(l, st.loss_history, st.loss_count * sizeof *l);
    *n = st.loss_count;
    trainer_state_free(&st);
    return l;
}

static int same_losses(const char *a, const char *b, size_t want) {
    size_t na, nb;
    double *la = losses_of(a, &na), *lb = losses_of(b, &nb);
    int same = la && lb && na == want && nb == want && !memcmp(la, lb, na * sizeof *la);
    free(la);
    free(lb);
    return same;
}

/* The weight files a run of c writes. */
static const char *weights_of(const TrainConfig *c) {
    return c->lora_rank > 0 ? "adapter/adapter_model.safetensors" : "model.safetensors";
}

/* The sim's model options: how the trainer loads its model for c. */
static SimCtx sim_for(const TrainConfig *c) {
    SimCtx s;
    memset(&s, 0, sizeof s);
    if (c->lora_rank > 0) {
        s.mo.lora_rank = c->lora_rank;
        s.mo.lora_alpha = c->lora_alpha > 0 ? c->lora_alpha : 2.0 * c->lora_rank;
        s.mo.lora_seed = c->seed;
        OprmError err;
        CHECK(train_lora_targets_parse(c->lora_targets, &s.mo.lora_targets, &err) == 0);
    }
    return s;
}

static int run(TrainConfig c, const char *out, SimCtx *sim, TrainResult *r, OprmError *err) {
    c.output_dir = out;
    c.overwrite_output_dir = 1;
    if (sim) {
        c.make_engine = sim_make_engine;
        c.engine_ctx = sim;
    }
    int rc = train_run(&c, r, err);
    if (rc && rc != 130) fprintf(stderr, "%s: %s\n", out, err->msg);
    return rc;
}

/* Host path vs sim path of one config: returns 1 when every number and file agrees. */
static int compare_case(const char *name, TrainConfig c, SimCtx *sim, int verbose) {
    char hn[64], sn[64];
    snprintf(hn, sizeof hn, "%s_host", name);
    snprintf(sn, sizeof sn, "%s_sim", name);
    char *ho = tmp(hn), *so = tmp(sn);
    OprmError err = {{0}};
    TrainResult rh, rs;
    CHECK(run(c, ho, NULL, &rh, &err) == 0);
    CHECK(run(c, so, sim, &rs, &err) == 0);
    CHECK(sim->engines == 1 && sim->steps == (int)c.max_steps && sim->sqnorms == (int)c.max_steps);
    char *lh = log_of(ho), *ls = log_of(so);
    int same_log = !strcmp(lh, ls) && strlen(lh) > 0;
    int same_w = same_file(ho, so, weights_of(&c)) && same_file(ho, so, "model.safetensors");
    if (c.loss == TRAIN_LOSS_BT) same_w = same_w && same_file(ho, so, BT_HEAD_FILE);
    int same_l = same_losses(ho, so, (size_t)c.max_steps);
    int same_eval = c.eval_data ? rh.eval_loss_end == rs.eval_loss_end && rh.eval_loss_start == rs.eval_loss_start &&
                                      rh.eval_acc_end == rs.eval_acc_end
                                : 1;
    if (verbose)
        fprintf(stderr, "  %s: log %s, losses %s, weights %s, eval %s (final loss %.17g vs %.17g)\n", name,
                same_log ? "identical" : "DIFFER", same_l ? "identical" : "DIFFER", same_w ? "identical" : "DIFFER",
                same_eval ? "identical" : "DIFFER", rh.last_loss, rs.last_loss);
    free(lh);
    free(ls);
    free(ho);
    free(so);
    return same_log && same_w && same_l && same_eval;
}

static void test_sim_matches_host(void) {
    TrainConfig c;
    SimCtx s;
    /* Full fine-tuning, OPRM loss, eval at the start, every 2 steps and the end. */
    tiny_config(&c, model, data, NULL);
    c.max_steps = 5;
    c.eval_data = edata;
    c.eval_steps = 2;
    s = sim_for(&c);
    CHECK(compare_case("full", c, &s, 1));
    CHECK(s.downloads == 1); /* the final model only (save_steps 0) */

    tiny_config(&c, model, data, NULL);
    c.max_steps = 5;
    c.lora_rank = 2;
    c.lora_alpha = 4;
    c.lora_targets = "q_proj,v_proj,down_proj";
    c.learning_rate = 1e-2;
    s = sim_for(&c);
    CHECK(compare_case("lora", c, &s, 1));

    /* Accumulation over 3 micro-batches, RgFT labels, clipping active. */
    tiny_config(&c, model, ldata, NULL);
    c.max_steps = 4;
    c.grad_accum = 3;
    c.batch_size = 1;
    c.max_grad_norm = 0.02;
    s = sim_for(&c);
    CHECK(compare_case("accum_clip", c, &s, 1));
    char *d = tmp("accum_clip_sim");
    double g = max_grad_norm_logged(d);
    fprintf(stderr, "  accum_clip: largest grad_norm %.4g > max_grad_norm %.2g (clipped)\n", g, c.max_grad_norm);
    CHECK(g > 2 * c.max_grad_norm);
    free(d);

    /* BT: the head is a host tensor (its norm, clip and AdamW on the host). */
    tiny_config(&c, model, data, NULL);
    c.max_steps = 5;
    c.loss = TRAIN_LOSS_BT;
    c.scheduler = SCHED_COSINE;
    c.warmup_steps = 2;
    c.weight_decay = 0.1;
    c.max_grad_norm = 0.05;
    s = sim_for(&c);
    CHECK(compare_case("bt_decay", c, &s, 1));
}

static int stop_at;
static int hook_stop(void *ctx, int64_t step, void *m) {
    return step == stop_at;
}

/* 5 steps straight vs stopped after step 2 and resumed, both on the sim:
 * 1 when losses and final files agree. */
static int resume_case(const char *name, TrainConfig c, SimCtx proto, int verbose) {
    char fn[64], cn[64];
    snprintf(fn, sizeof fn, "%s_straight", name);
    snprintf(cn, sizeof cn, "%s_cut", name);
    char *full = tmp(fn), *cut = tmp(cn);
    OprmError err = {{0}};
    TrainResult r;
    c.max_steps = 5;
    SimCtx s1 = proto, s2 = proto, s3 = proto;
    CHECK(run(c, full, &s1, &r, &err) == 0 && r.steps == 5);
    TrainConfig cc = c;
    cc.hook = hook_stop;
    stop_at = 2;
    CHECK(run(cc, cut, &s2, &r, &err) == 130 && r.steps == 2);
    CHECK(s2.downloads == 1); /* the interrupt's checkpoint */
    TrainConfig rc = c;
    rc.resume = "latest";
    rc.output_dir = cut;
    rc.make_engine = sim_make_engine;
    rc.engine_ctx = &s3;
    int st = train_run(&rc, &r, &err);
    if (st) fprintf(stderr, "%s resume: %s\n", name, err.msg);
    CHECK(st == 0 && r.steps == 5);
    CHECK(s3.uploads == 1 && s3.steps == 3);
    int same = same_losses(full, cut, 5) && same_file(full, cut, weights_of(&c)) &&
               same_file(full, cut, "model.safetensors") &&
               (c.loss != TRAIN_LOSS_BT || same_file(full, cut, BT_HEAD_FILE));
    if (verbose) fprintf(stderr, "  %s: resumed run %s\n", name, same ? "bit-identical" : "DIFFERS");
    free(full);
    free(cut);
    return same;
}

/* A checkpoint moves between the two engines: cut on one, resumed on the
 * other, the run is the straight run of either (the files are the same). */
static void cross_case(const char *name, int cut_on_sim) {
    TrainConfig c;
    tiny_config(&c, model, ldata, NULL);
    c.max_steps = 5;
    c.weight_decay = 0.1;
    char sn[64], cn[64];
    snprintf(sn, sizeof sn, "%s_straight", name);
    snprintf(cn, sizeof cn, "%s_cut", name);
    char *full = tmp(sn), *cut = tmp(cn);
    OprmError err = {{0}};
    TrainResult r;
    SimCtx s1 = sim_for(&c), s2 = sim_for(&c);
    CHECK(run(c, full, NULL, &r, &err) == 0);
    TrainConfig cc = c;
    cc.hook = hook_stop;
    stop_at = 2;
    CHECK(run(cc, cut, cut_on_sim ? &s1 : NULL, &r, &err) == 130);
    TrainConfig rc = c;
    rc.resume = "latest";
    rc.output_dir = cut;
    if (!cut_on_sim) {
        rc.make_engine = sim_make_engine;
        rc.engine_ctx = &s2;
    }
    CHECK(train_run(&rc, &r, &err) == 0 && r.steps == 5);
    int same = same_losses(full, cut, 5) && same_file(full, cut, "model.safetensors");
    fprintf(stderr, "  %s: %s\n", name, same ? "bit-identical to the straight host run" : "DIFFERS");
    CHECK(same);
    free(full);
    free(cut);
}

static void test_sim_resume_exact(void) {
    cross_case("host_to_sim", 0);
    cross_case("sim_to_host", 1);

    TrainConfig c;
    tiny_config(&c, model, ldata, NULL);
    c.grad_accum = 2;
    c.batch_size = 1;
    c.max_grad_norm = 0.05;
    CHECK(resume_case("resume_full", c, sim_for(&c), 1));

    tiny_config(&c, model, data, NULL);
    c.lora_rank = 2;
    c.lora_alpha = 4;
    c.learning_rate = 1e-2;
    CHECK(resume_case("resume_lora", c, sim_for(&c), 1));

    tiny_config(&c, model, data, NULL);
    c.loss = TRAIN_LOSS_BT;
    c.weight_decay = 0.1;
    CHECK(resume_case("resume_bt", c, sim_for(&c), 1));
}

/* The same comparisons fail when the sim drops a transfer. */
static void test_broken_sim_is_caught(void) {
    TrainConfig c;
    tiny_config(&c, model, data, NULL);
    c.max_steps = 3;
    SimCtx s = sim_for(&c);
    s.download_noop = 1; /* the final model would be the initial weights */
    int same = compare_case("broken_download", c, &s, 0);
    fprintf(stderr, "  download a no-op: host vs sim %s\n", same ? "IDENTICAL (not caught)" : "differ (caught)");
    CHECK(!same);

    tiny_config(&c, model, data, NULL);
    SimCtx p = sim_for(&c);
    p.download_noop = 1; /* checkpoint-2 would hold the initial weights and zero moments */
    same = resume_case("broken_download_resume", c, p, 0);
    fprintf(stderr, "  download a no-op: resume %s\n", same ? "IDENTICAL (not caught)" : "differs (caught)");
    CHECK(!same);

    p = sim_for(&c);
    p.upload_noop = 1; /* the resumed device would start with zero moments */
    same = resume_case("broken_upload_resume", c, p, 0);
    fprintf(stderr, "  upload a no-op: resume %s\n", same ? "IDENTICAL (not caught)" : "differs (caught)");
    CHECK(!same);
}

/* NaN on the device after step 2 (checkpoint-2 saved): step 3 stops with the
 * step, NaN and the records; checkpoint-2 holds the host path's weights. */
static void test_sim_nan_stops(void) {
    TrainConfig c;
    tiny_config(&c, model, data, NULL);
    c.max_steps = 4;
    c.save_steps = 2;
    char *ho = tmp("nan_host"), *so = tmp("nan_sim");
    OprmError err = {{0}};
    TrainResult r;
    CHECK(run(c, ho, NULL, &r, &err) == 0);
    SimCtx s = sim_for(&c);
    s.poison_after = 2;
    CHECK(run(c, so, &s, &r, &err) == 1);
    CHECK_STR_CONTAINS(err.msg, "step 3");
    CHECK_STR_CONTAINS(err.msg, "NaN");
    CHECK_STR_CONTAINS(err.msg, "records: p");
    CHECK_STR_CONTAINS(err.msg, "checkpoint-2");
    CHECK(r.steps == 2 && s.steps == 2);
    char *ck_h = path_join(ho, "checkpoint-2"), *ck_s = path_join(so, "checkpoint-2");
    CHECK(checkpoint_verify(ck_s, 1, &err) == 0);
    CHECK(same_file(ck_h, ck_s, "model.safetensors"));
    CHECK(same_file(ck_h, ck_s, "optimizer.bin"));
    char *man = path_join(so, CHECKPOINT_MANIFEST), *ck3 = path_join(so, "checkpoint-3");
    CHECK(!file_exists(man) && !file_exists(ck3)); /* no final model, no step 3 */
    free(man);
    free(ck3);
    free(ck_h);
    free(ck_s);
    free(ho);
    free(so);
}

static void test_ranks_refused(void) {
    OprmError err = {{0}};
    CHECK(train_device_check_ranks(1, "cuda:0", &err) == 0);
    CHECK(train_device_check_ranks(2, "cuda:1", &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "cuda:1");
    CHECK_STR_CONTAINS(err.msg, "2 MPI ranks");
    CHECK_STR_CONTAINS(err.msg, "--device cpu");
}

/* The engine is told the largest batch: records x responses x max_length,
 * best-of-N sets counted with their size; recompute passed through. */
static void test_engine_options(void) {
    char *bon = tmp("bon.jsonl");
    FILE *f = fopen(bon, "w");
    CHECK(f != NULL);
    if (!f) return;
    for (int i = 0; i < 6; i++)
        fprintf(f, "{\"id\": \"b%d\", \"prompt\": \"Pick %d\", \"best\": \"blue river.\", \"others\": [%s]}\n", i, i,
                i == 3 ? "\"red.\", \"calm stone.\", \"seven.\", \"quick!\"" : "\"red.\"");
    fclose(f);
    TrainConfig c;
    tiny_config(&c, model, bon, NULL);
    c.max_steps = 1;
    c.gradient_checkpointing = 1;
    SimCtx s = sim_for(&c);
    char *out = tmp("bon_out");
    OprmError err = {{0}};
    TrainResult r;
    CHECK(run(c, out, &s, &r, &err) == 0);
    CHECK(s.opt.train == 1 && s.opt.recompute == 1);
    CHECK(s.opt.max_tokens_per_batch == c.batch_size * 5 * TINY_MAX_LEN); /* b3: 5 responses */
    tiny_config(&c, model, data, NULL);
    c.max_steps = 1;
    s = sim_for(&c);
    CHECK(run(c, out, &s, &r, &err) == 0);
    CHECK(s.opt.recompute == 0 && s.opt.max_tokens_per_batch == c.batch_size * 2 * TINY_MAX_LEN);
    free(out);
    free(bon);
}

static json_t *training_args(const char *dir) {
    char *p = path_join(dir, OPRM_META_FILE);
    json_error_t je;
    json_t *o = json_load_file(p, 0, &je);
    free(p);
    json_t *a = o ? json_object_get(o, "training_args") : NULL;
    if (a) json_incref(a);
    if (o) json_decref(o);
    return a;
}

static void test_cli(void) {
    char *out = tmp("cli_cuda"), *scratch = tmp("cli.txt");
    char args[4096], text[16384];
    /* cuda passes the option table; the engine refuses at setup, nothing is written. */
    snprintf(args, sizeof args, "train --device cuda --model %s --data %s --output %s --max_steps 1 --batch-size 2",
             model, data, out);
    int rc = run_oprm(args, scratch, text, sizeof text);
    char *final = path_join(out, "model.safetensors");
    if (rc == 0 && cuda_device_count(NULL, 0) > 0) {
        /* a GPU and an engine that trains: one step on it, saved like on the CPU */
        CHECK_STR_CONTAINS(text, "oprm train: device cuda:0");
        CHECK(file_exists(final));
    } else {
        CHECK(rc == 1);
        CHECK_STR_CONTAINS(text, "cuda:0");
        CHECK_STR_CONTAINS(text, "--device cpu");
        CHECK(!file_exists(final));
    }
    free(final);
    snprintf(args, sizeof args, "train --device gpu --model %s --data %s --output %s", model, data, out);
    CHECK(run_oprm(args, scratch, text, sizeof text) == 2);
    CHECK_STR_CONTAINS(text, "expected cpu, cuda or cuda:N");
    free(out);

    /* --gradient_checkpointing on the CPU: noted, recorded, taken back on resume. */
    out = tmp("cli_gc");
    snprintf(args, sizeof args,
             "train --device cpu --gradient_checkpointing --model %s --data %s --output %s --max_steps 2 "
             "--save_steps 1 --batch-size 2 --max_length %d --threads 1 --no-progress",
             model, data, out, TINY_MAX_LEN);
    rc = run_oprm(args, scratch, text, sizeof text);
    CHECK(rc == 0);
    CHECK_STR_CONTAINS(text, "oprm train: device cpu (1 thread)");
    CHECK_STR_CONTAINS(text, "--gradient_checkpointing has no effect on the CPU");
    json_t *a = training_args(out);
    CHECK(a && json_is_true(json_object_get(a, "gradient_checkpointing")));
    const char *dev = a ? json_string_value(json_object_get(a, "device")) : NULL;
    CHECK(dev && !strcmp(dev, "cpu"));
    if (a) json_decref(a);
    TrainConfig c;
    train_config_default(&c);
    char *ck1 = path_join(out, "checkpoint-1");
    c.output_dir = out;
    c.resume = ck1;
    c.unset = TRAIN_SET_ALL;
    c.quiet = 1;
    c.progress = 0;
    c.threads = 1;
    OprmError err = {{0}};
    TrainResult r;
    rc = train_run(&c, &r, &err);
    if (rc) fprintf(stderr, "resume: %s\n", err.msg);
    CHECK(rc == 0 && r.steps == 2);
    a = training_args(out);
    CHECK(a && json_is_true(json_object_get(a, "gradient_checkpointing"))); /* from the run */
    if (a) json_decref(a);
    free(ck1);
    free(out);

    out = tmp("cli_gc_false");
    snprintf(args, sizeof args,
             "train --gradient_checkpointing false --model %s --data %s --output %s --max_steps 1 --batch-size 2 "
             "--max_length %d --threads 1 --no-progress",
             model, data, out, TINY_MAX_LEN);
    CHECK(run_oprm(args, scratch, text, sizeof text) == 0);
    CHECK(strstr(text, "no effect on the CPU") == NULL);
    a = training_args(out);
    CHECK(a && json_is_false(json_object_get(a, "gradient_checkpointing")));
    if (a) json_decref(a);
    snprintf(args, sizeof args, "train --gradient_checkpointing maybe --model %s --data %s --output %s", model, data,
             out);
    CHECK(run_oprm(args, scratch, text, sizeof text) == 2);
    CHECK_STR_CONTAINS(text, "--gradient_checkpointing must be true or false");
    free(out);
    free(scratch);
}

int main(void) {
    if (!mkdtemp(tmp_dir)) return 1;
    snprintf(model, sizeof model, "%s/model", tmp_dir);
    snprintf(data, sizeof data, "%s/pairs.jsonl", tmp_dir);
    snprintf(ldata, sizeof ldata, "%s/labelled.jsonl", tmp_dir);
    snprintf(edata, sizeof edata, "%s/eval.jsonl", tmp_dir);
    if (tiny_model(model)) return 1;
    tiny_pairs(data, 12, 0);
    tiny_pairs(ldata, 12, 1);
    tiny_pairs(edata, 6, 1);
    RUN(test_ranks_refused);
    RUN(test_sim_matches_host);
    RUN(test_sim_resume_exact);
    RUN(test_broken_sim_is_caught);
    RUN(test_sim_nan_stops);
    RUN(test_engine_options);
    RUN(test_cli);
    OprmError err;
    remove_tree(tmp_dir, &err);
    return test_summary();
}
