/* Resume (issue 12 items 2 and 8): a resumed run takes every setting from
 * the run itself, refuses a contradicting flag (naming both values), extends
 * with a larger --max_steps, leaves a finished run byte for byte untouched
 * (no "final loss nan" retraining), resumes LoRA without --lora_r; and
 * interrupt + resume is bit-exact for LoRA, RgFT, gradient accumulation,
 * --label-fraction, the BT loss and warmup + cosine. Tiny random model, no
 * shared data. */
#include <signal.h>

#include "train/checkpoint.h"
#include "train/trainer_state.h"
#include "train_testutil.h"

static char tmp_dir[] = "/tmp/oprm_test_train_resume_XXXXXX";
static char model[TINY_PATH], data[TINY_PATH], ldata[TINY_PATH];

static char *tmp(const char *name) {
    return path_join(tmp_dir, name);
}

static int stop_at;
static int hook_stop(void *ctx, int64_t step, void *m) {
    return step == stop_at;
}

/* What the command line gives on resume: only --resume and --output. */
static void resume_only(TrainConfig *c, const char *out) {
    train_config_default(c);
    c->output_dir = out;
    c->resume = "latest";
    c->unset = TRAIN_SET_ALL;
    c->quiet = 1;
    c->progress = 0;
    c->threads = 1;
}

/* One config, 5 steps straight vs. stopped after step 2 and resumed with
 * nothing but --resume --output: same losses bit for bit, same weights. */
static void exact_case(const char *name, TrainConfig *c) {
    char full_name[64], cut_name[64];
    snprintf(full_name, sizeof full_name, "%s_full", name);
    snprintf(cut_name, sizeof cut_name, "%s_cut", name);
    char *full = tmp(full_name), *cut = tmp(cut_name);
    OprmError err = {{0}};
    TrainResult r;
    c->output_dir = full;
    c->max_steps = 5;
    c->save_steps = 0;
    int rc = train_run(c, &r, &err);
    if (rc) fprintf(stderr, "%s: %s\n", name, err.msg);
    CHECK(rc == 0 && r.steps == 5);
    c->output_dir = cut;
    c->hook = hook_stop;
    stop_at = 2;
    CHECK(train_run(c, &r, &err) == 130);
    c->hook = NULL;
    TrainConfig rc2;
    resume_only(&rc2, cut);
    rc = train_run(&rc2, &r, &err);
    if (rc) fprintf(stderr, "%s resume: %s\n", name, err.msg);
    CHECK(rc == 0 && r.steps == 5);
    size_t na, nb;
    double *la = run_losses(full, &na), *lb = run_losses(cut, &nb);
    int same = la && lb && na == 5 && nb == 5 && !memcmp(la, lb, na * sizeof *la);
    CHECK(same);
    fprintf(stderr, "  %s: losses %s (step 5: %.17g vs %.17g)\n", name, same ? "bit-identical" : "DIFFER",
            la && na == 5 ? la[4] : NAN, lb && nb == 5 ? lb[4] : NAN);
    free(la);
    free(lb);
    const char *weights = c->lora_rank > 0 ? "adapter/adapter_model.safetensors" : "model.safetensors";
    size_t sa = 0, sb = 0;
    char *wa = read_in(full, weights, &sa), *wb = read_in(cut, weights, &sb);
    CHECK(wa && wb && sa == sb && !memcmp(wa, wb, sa));
    free(wa);
    free(wb);
    if (c->loss == TRAIN_LOSS_BT) {
        wa = read_in(full, BT_HEAD_FILE, &sa);
        wb = read_in(cut, BT_HEAD_FILE, &sb);
        CHECK(wa && wb && sa == sb && !memcmp(wa, wb, sa));
        free(wa);
        free(wb);
    }
    free(full);
    free(cut);
}

static void test_exact_resume_matrix(void) {
    TrainConfig c;
    tiny_config(&c, model, data, NULL);
    c.lora_rank = 2;
    c.lora_alpha = 4;
    c.lora_targets = "q_proj,v_proj,down_proj";
    c.learning_rate = 1e-2;
    exact_case("lora", &c);

    tiny_config(&c, model, ldata, NULL);
    c.rgft.mode = RGFT_HARD;
    exact_case("rgft_hard", &c);

    tiny_config(&c, model, ldata, NULL);
    c.grad_accum = 3;
    c.batch_size = 1;
    exact_case("grad_accum", &c);

    tiny_config(&c, model, ldata, NULL);
    c.label_fraction = 0.5;
    exact_case("label_fraction", &c);

    tiny_config(&c, model, data, NULL);
    c.loss = TRAIN_LOSS_BT;
    exact_case("bt", &c);

    tiny_config(&c, model, data, NULL);
    c.scheduler = SCHED_COSINE;
    c.warmup_steps = 2;
    c.weight_decay = 0.1;
    exact_case("warmup_cosine", &c);
}

/* tiny_pairs' records with the fields renamed (question / good / poor) and an
 * invalid record (no "good") after the first: read only with the data flags. */
static void renamed_pairs(const char *src, const char *dst) {
    size_t len = 0;
    OprmError err;
    char *text = read_file(src, &len, &err);
    FILE *f = fopen(dst, "w");
    CHECK(text && f);
    if (!text || !f) {
        free(text);
        if (f) fclose(f);
        return;
    }
    int line = 0;
    for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n")) {
        json_t *o = json_loads(l, 0, NULL), *r = json_object();
        json_object_set(r, "question", json_object_get(o, "prompt"));
        json_object_set(r, "good", json_object_get(o, "chosen"));
        json_object_set(r, "poor", json_object_get(o, "rejected"));
        char *d = json_dumps(r, JSON_COMPACT);
        fprintf(f, "%s\n", d);
        if (line++ == 0) fprintf(f, "{\"question\": \"q\", \"poor\": \"only one side\"}\n");
        free(d);
        json_decref(r);
        json_decref(o);
    }
    fclose(f);
    free(text);
}

/* The data readers' flags are training args: recorded in oprm.json, taken back
 * on resume (before, a resume read the files with the default field names and
 * stopped: "field 'prompt' missing"), bit-exact; a contradicting value is
 * refused naming both values. */
static void test_data_flags_resume(void) {
    char *rdata = tmp("renamed.jsonl");
    renamed_pairs(data, rdata);
    TrainConfig c;
    tiny_config(&c, model, rdata, NULL);
    c.data_opt.fields.prompt = "question";
    c.data_opt.fields.chosen = "good";
    c.data_opt.fields.rejected = "poor";
    c.data_opt.kind = REC_PAIR;
    c.data_opt.skip_invalid = 1;
    exact_case("data_flags", &c);
    char *out = tmp("data_flags_cut");
    size_t len;
    char *meta = read_in(out, "oprm.json", &len);
    CHECK_STR_CONTAINS(meta, "\"prompt_key\": \"question\"");
    CHECK_STR_CONTAINS(meta, "\"chosen_key\": \"good\"");
    CHECK_STR_CONTAINS(meta, "\"rejected_key\": \"poor\"");
    CHECK_STR_CONTAINS(meta, "\"chosen_label_key\": \"chosen_label\"");
    CHECK_STR_CONTAINS(meta, "\"data_kind\": \"pair\"");
    CHECK_STR_CONTAINS(meta, "\"skip_invalid\": true");
    free(meta);

    /* The binary: resume from checkpoint-2 of a CLI run with nothing but
     * --resume and --output; contradicting flags are refused, nothing changes. */
    char *cli = tmp("data_flags_cli"), *scratch = tmp("cli3.txt");
    char args[3072], text[8192];
    snprintf(args, sizeof args,
             "train --model %s --data %s --output %s --max_length 160 --per_device_train_batch_size 2 --max_steps 4 "
             "--save_steps 2 --prompt-key question --chosen_key good --rejected-key=poor --data-kind pair "
             "--skip-invalid --threads 1 --quiet",
             model, rdata, cli);
    int status = run_oprm(args, scratch, text, sizeof text);
    if (status) fprintf(stderr, "%s\n", text);
    CHECK(status == 0);
    char *ck2 = path_join(cli, "checkpoint-2");
    uint64_t before = tree_hash(cli, 1469598103934665603ULL);
    static const struct {
        const char *flag, *given, *saved;
    } bad[] = {
        {"--chosen-key chosen", "--chosen-key chosen", "--chosen-key good"},
        {"--prompt_key=prompt", "--prompt-key prompt", "--prompt-key question"},
        {"--data-kind point", "--data-kind point", "--data-kind pair"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(args, sizeof args, "train --resume %s --output %s %s", ck2, cli, bad[i].flag);
        status = run_oprm(args, scratch, text, sizeof text);
        CHECK(status == 1);
        CHECK_STR_CONTAINS(text, bad[i].given);
        CHECK_STR_CONTAINS(text, bad[i].saved);
        CHECK_STR_CONTAINS(text, "contradicts the run being resumed");
    }
    CHECK(tree_hash(cli, 1469598103934665603ULL) == before);
    /* The same values again are no contradiction. */
    snprintf(args, sizeof args, "train --resume %s --output %s --chosen-key good --skip-invalid --threads 1 --quiet",
             ck2, cli);
    status = run_oprm(args, scratch, text, sizeof text);
    if (status) fprintf(stderr, "%s\n", text);
    CHECK(status == 0);
    CHECK(!strstr(text, "missing"));
    meta = read_in(cli, "oprm.json", &len);
    CHECK_STR_CONTAINS(meta, "\"prompt_key\": \"question\"");
    CHECK_STR_CONTAINS(meta, "\"skip_invalid\": true");
    free(meta);
    /* A run trained without --skip-invalid refuses it on resume. */
    char *plain = tmp("finished");
    snprintf(args, sizeof args, "train --resume --output %s --skip-invalid", plain);
    status = run_oprm(args, scratch, text, sizeof text);
    CHECK(status == 1);
    CHECK_STR_CONTAINS(text, "--skip-invalid contradicts the run being resumed");
    CHECK_STR_CONTAINS(text, "was trained without --skip-invalid");
    free(plain);
    free(ck2);
    free(scratch);
    free(cli);
    free(out);
    free(rdata);
}

/* A finished run: resuming it (settings left out, or the same ones) says so
 * and changes no byte (names, sizes, contents, mtimes of every file). */
static void test_finished_run_untouched(void) {
    char *out = tmp("finished");
    TrainConfig c;
    tiny_config(&c, model, data, out);
    c.seed = 0;
    c.max_steps = 6; /* 12 records, batch 2: one epoch */
    c.save_steps = 3;
    c.batch_size = 1;
    OprmError err = {{0}};
    TrainResult r;
    CHECK(train_run(&c, &r, &err) == 0 && r.steps == 6);
    uint64_t before = tree_hash(out, 1469598103934665603ULL);
    sleep(1); /* a rewrite would show in the mtimes */

    /* The command: --model, --data and --seed given, the rest left out
     * (before: max_length 1024, 12 more steps from 1 epoch of batch 8... or "final loss nan"). */
    TrainConfig rc;
    resume_only(&rc, out);
    rc.model_dir = model;
    rc.data[0] = data;
    rc.n_data = 1;
    rc.seed = 0;
    rc.unset &= ~(TRAIN_SET_BIT(TRAIN_SET_MODEL) | TRAIN_SET_BIT(TRAIN_SET_DATA) | TRAIN_SET_BIT(TRAIN_SET_SEED));
    int code = train_run(&rc, &r, &err);
    CHECK(code == 0);
    CHECK(r.steps == 6);
    CHECK(tree_hash(out, 1469598103934665603ULL) == before);

    /* A contradicting flag is refused, naming both values; nothing changes. */
    rc.max_length = 128;
    rc.unset &= ~TRAIN_SET_BIT(TRAIN_SET_MAX_LENGTH);
    CHECK(train_run(&rc, &r, &err) == 1);
    CHECK_STR_CONTAINS(err.msg, "--max_length 128");
    CHECK_STR_CONTAINS(err.msg, "max_length 160");
    rc.max_length = 0;
    rc.unset |= TRAIN_SET_BIT(TRAIN_SET_MAX_LENGTH);
    rc.seed = 1;
    CHECK(train_run(&rc, &r, &err) == 1);
    CHECK_STR_CONTAINS(err.msg, "--seed 1");
    CHECK_STR_CONTAINS(err.msg, "--seed 0");
    rc.seed = 0;
    rc.learning_rate = 1e-4;
    rc.unset &= ~TRAIN_SET_BIT(TRAIN_SET_LEARNING_RATE);
    CHECK(train_run(&rc, &r, &err) == 1);
    CHECK_STR_CONTAINS(err.msg, "--learning_rate 0.0001");
    CHECK_STR_CONTAINS(err.msg, "0.003");
    rc.unset |= TRAIN_SET_BIT(TRAIN_SET_LEARNING_RATE);
    /* A smaller --max_steps does not extend: refused. */
    rc.max_steps = 4;
    rc.unset &= ~TRAIN_SET_BIT(TRAIN_SET_MAX_STEPS);
    CHECK(train_run(&rc, &r, &err) == 1);
    CHECK_STR_CONTAINS(err.msg, "--max_steps 4");
    CHECK(tree_hash(out, 1469598103934665603ULL) == before);

    /* The binary: exit 0, says it has finished, no NaN, no byte changed. */
    char args[2048], text[8192];
    char *scratch = tmp("cli.txt");
    snprintf(args, sizeof args, "train --resume latest --output %s --model %s --data %s --seed 0", out, model, data);
    int status = run_oprm(args, scratch, text, sizeof text);
    CHECK(status == 0);
    CHECK_STR_CONTAINS(text, "already finished");
    CHECK(!strstr(text, "nan"));
    snprintf(args, sizeof args, "train --resume --output_dir %s --max_length 128", out);
    status = run_oprm(args, scratch, text, sizeof text);
    CHECK(status == 1);
    CHECK_STR_CONTAINS(text, "--max_length 128");
    CHECK_STR_CONTAINS(text, "max_length 160");
    free(scratch);
    CHECK(tree_hash(out, 1469598103934665603ULL) == before);

    /* A larger --max_steps extends the run from checkpoint-6: steps 1..6 keep
     * their losses, 7..8 are new. */
    size_t n0, n1;
    double *l0 = run_losses(out, &n0);
    rc.max_steps = 8;
    int ext = train_run(&rc, &r, &err);
    if (ext) fprintf(stderr, "extend: %s\n", err.msg);
    CHECK(ext == 0 && r.steps == 8);
    double *l1 = run_losses(out, &n1);
    CHECK(l0 && l1 && n0 == 6 && n1 == 8 && !memcmp(l0, l1, 6 * sizeof *l0));
    free(l0);
    free(l1);
    /* The schedule, batch, max_length of the extension came from the run. */
    size_t len;
    char *meta = read_in(out, "oprm.json", &len);
    CHECK_STR_CONTAINS(meta, "\"max_length\": 160");
    CHECK_STR_CONTAINS(meta, "\"per_device_train_batch_size\": 1");
    free(meta);
    free(out);
}

/* A finished run whose final step has no checkpoint cannot be extended
 * (the final model holds no optimizer state): refused, nothing changes. */
static void test_extend_needs_checkpoint(void) {
    char *out = tmp("no_ckpt");
    TrainConfig c;
    tiny_config(&c, model, data, out);
    c.max_steps = 3;
    c.save_steps = 2;
    OprmError err = {{0}};
    TrainResult r;
    CHECK(train_run(&c, &r, &err) == 0);
    uint64_t before = tree_hash(out, 1469598103934665603ULL);
    TrainConfig rc;
    resume_only(&rc, out);
    rc.max_steps = 5;
    rc.unset &= ~TRAIN_SET_BIT(TRAIN_SET_MAX_STEPS);
    CHECK(train_run(&rc, &r, &err) == 1);
    CHECK_STR_CONTAINS(err.msg, "checkpoint-3");
    CHECK(tree_hash(out, 1469598103934665603ULL) == before);
    free(out);
}

/* LoRA resumes without --lora_r: rank, alpha and targets from the run (before:
 * "optimizer.bin holds 28 tensors"); a contradicting rank is refused. */
static void test_lora_resume_without_rank(void) {
    char *out = tmp("lora_cli");
    char args[2048], text[8192];
    char *scratch = tmp("cli2.txt");
    snprintf(args, sizeof args,
             "train --model_name_or_path %s --data %s --output_dir %s --max_length 160 --per_device_train_batch_size 2 "
             "--max_steps 4 --save_steps 2 --lora_r 2 --lora_alpha 8 --lora_target_modules q_proj,v_proj "
             "--learning_rate 1e-2 --threads 1 --quiet",
             model, data, out);
    CHECK(run_oprm(args, scratch, text, sizeof text) == 0);
    size_t len;
    char *meta = read_in(out, "oprm.json", &len);
    CHECK_STR_CONTAINS(meta, "\"lora_targets\": \"q_proj,v_proj\"");
    free(meta);
    /* Back to step 2, then resume with nothing but the checkpoint and --output. */
    char *ck2 = path_join(out, "checkpoint-2");
    snprintf(args, sizeof args, "train --resume %s --output %s --threads 1 --quiet", ck2, out);
    int status = run_oprm(args, scratch, text, sizeof text);
    if (status) fprintf(stderr, "%s\n", text);
    CHECK(status == 0);
    CHECK(!strstr(text, "tensors"));
    snprintf(args, sizeof args, "train --resume %s --output %s --lora-rank 4", ck2, out);
    status = run_oprm(args, scratch, text, sizeof text);
    CHECK(status == 1);
    CHECK_STR_CONTAINS(text, "--lora_r 4");
    CHECK_STR_CONTAINS(text, "--lora_r 2");
    free(ck2);
    free(scratch);
    free(out);
}

int main(void) {
    if (tiny_fixture(tmp_dir, model, data, ldata, 12)) return 1;
    RUN(test_finished_run_untouched);
    RUN(test_data_flags_resume);
    RUN(test_extend_needs_checkpoint);
    RUN(test_lora_resume_without_rank);
    RUN(test_exact_resume_matrix);
    OprmError err;
    remove_tree(tmp_dir, &err);
    return test_summary();
}
