/* oprm demo: on a fresh machine, with nothing downloaded, a tiny ordinal
 * reward model learns a graded synthetic task from scratch and shows what an
 * OPRM gives: pair accuracy, calibration, score distributions, and the audit
 * catching preference labels that were flipped on purpose. docs/demo.md. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "io/fileio.h"
#include "engine/device.h"
#include "model/model.h"
#include "ordinal/metrics.h"
#include "synth/demo_eval.h"
#include "synth/init_model.h"
#include "synth/task.h"
#include "train/trainer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: oprm demo [--output DIR] [options]\n\n"
            "Trains a tiny ordinal reward model (OPRM) from scratch on a synthetic graded task and\n"
            "shows what it learned, in about a minute on two cores. Nothing is downloaded.\n"
            "The task: requests such as \"Write six even digits.\" answered by digit strings whose\n"
            "quality is known by construction (good: every digit follows the rule; normal: two or\n"
            "three break it; bad: five or six do). 10%% of the training pairs have their preference\n"
            "flipped on purpose; half of the pairs keep their quality labels for RgFT.\n\n"
            "options:\n"
            "  --output DIR          where everything goes (default oprm-demo): init/ (the fresh\n"
            "                        model), model/ (trained), data/, demo_template.txt,\n"
            "                        summary.json, report.html\n"
            "  --arch NAME           llama (default), qwen2, qwen3 or mistral\n"
            "  --max-steps N         training steps (default 800)\n"
            "  --batch-size N        pairs per step (default 16)\n"
            "  --learning-rate X     peak learning rate (default 5e-3)\n"
            "  --label-fraction F    share of pairs whose labels RgFT uses (default 0.5)\n"
            "  --flip-fraction F     share of training pairs flipped on purpose (default 0.1)\n"
            "  --audit-pairs N       training pairs the audit scores (default 3000)\n"
            "  --seed N              seed of the task, the weights and the label choice (default 1)\n"
            "  --threads N           CPU threads, 0 = all cores (default 1: the model is too\n"
            "                        small to gain from more)\n"
            "  --force               reuse an existing output directory\n"
            "  -h, --help            show this help\n");
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int parse_long(const char *flag, const char *v, long min, long *out) {
    return arg_long("demo", flag, v, min, 100000000L, out);
}

static int parse_double(const char *flag, const char *v, double lo, double hi, double *out) {
    return arg_double("demo", flag, v, lo, hi, out);
}

static void print_example(int digits, uint64_t seed) {
    SynthRng r;
    synth_rng_seed(&r, seed + 12345);
    char prompt[64], good[SYNTH_MAX_DIGITS + 1], normal[SYNTH_MAX_DIGITS + 1], bad[SYNTH_MAX_DIGITS + 1];
    synth_prompt(0, digits, prompt, sizeof prompt);
    synth_response(&r, 0, digits, SYNTH_GOOD, good);
    synth_response(&r, 0, digits, SYNTH_NORMAL, normal);
    synth_response(&r, 0, digits, SYNTH_BAD, bad);
    printf("      e.g. \"%s\"  good \"%s\"  normal \"%s\"  bad \"%s\"\n", prompt, good, normal, bad);
}

static int write_summary(const char *out_dir, json_t *summary) {
    char *path = path_join(out_dir, "summary.json");
    char *text = json_dumps(summary, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    OprmError err = {{0}};
    int rc = write_file_atomic(path, text, strlen(text), &err);
    if (rc) fprintf(stderr, "oprm demo: %s\n", err.msg);
    free(text);
    free(path);
    return rc;
}

int cmd_demo(int argc, char **argv) {
    const char *out_dir = "oprm-demo", *arch_name = "llama";
    /* The settings measured in docs/demo.md. AdamW's beta2 is 0.95: with the
     * usual 0.999 this tiny model stays on its initial plateau. */
    TrainConfig to;
    train_config_default(&to);
    to.max_steps = 800;
    to.batch_size = 16;
    to.learning_rate = 5e-3;
    to.scheduler = SCHED_COSINE;
    to.warmup_steps = 50;
    to.adam_beta2 = 0.95;
    to.max_grad_norm = 1.0;
    to.label_fraction = 0.5;
    to.save_steps = 0;
    to.logging_steps = 100;
    SynthOptions so;
    synth_default_options(&so);
    /* One thread: the demo's matrices are 64 wide, too small to share; with the
     * cores busy, two threads were 15x slower here (docs/demo.md). */
    long audit_pairs = 3000, seed = 1, threads = 1;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return EXIT_OK;
        }
        if (!strcmp(a, "--force")) {
            force = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "oprm demo: unknown option or missing value: %s\n\n", a);
            usage(stderr);
            return EXIT_USAGE;
        }
        const char *v = argv[++i];
        long x = 0;
        int bad = 0;
        if (!strcmp(a, "--output")) out_dir = v;
        else if (!strcmp(a, "--arch")) arch_name = v;
        else if (!strcmp(a, "--max-steps")) bad = parse_long(a, v, 1, &x), to.max_steps = x;
        else if (!strcmp(a, "--batch-size")) bad = parse_long(a, v, 1, &x), to.batch_size = (int)x;
        else if (!strcmp(a, "--learning-rate")) bad = parse_double(a, v, 1e-9, 1, &to.learning_rate);
        else if (!strcmp(a, "--label-fraction")) bad = parse_double(a, v, 0, 1, &to.label_fraction);
        else if (!strcmp(a, "--flip-fraction")) bad = parse_double(a, v, 0, 0.5, &so.flip_fraction);
        else if (!strcmp(a, "--audit-pairs")) bad = parse_long(a, v, 1, &audit_pairs);
        else if (!strcmp(a, "--seed")) bad = parse_long(a, v, 0, &seed);
        else if (!strcmp(a, "--threads")) bad = parse_long(a, v, 0, &threads);
        else {
            fprintf(stderr, "oprm demo: unknown option %s\n\n", a);
            usage(stderr);
            return EXIT_USAGE;
        }
        if (bad) return EXIT_USAGE;
    }
    if ((double)to.max_steps * to.batch_size > 5e6) {
        fprintf(stderr, "oprm demo: --max-steps x --batch-size asks for more than 5 million training pairs\n");
        return EXIT_USAGE;
    }
    OprmError err = {{0}};
    InitOptions io;
    ModelArch arch;
    if (init_parse_arch(arch_name, &arch, &err)) {
        fprintf(stderr, "oprm demo: %s\n", err.msg);
        return EXIT_USAGE;
    }
    char *init_dir = path_join(out_dir, "init"), *model_dir = path_join(out_dir, "model");
    char *data_dir = path_join(out_dir, "data"), *report_path = path_join(out_dir, "report.html");
    char *labels_path = NULL;
    char *tpl_path = path_join(out_dir, "demo_template.txt");
    char *train_path = path_join(data_dir, "train_pairs.jsonl"), *truth_path = path_join(data_dir, "train_truth.jsonl");
    char *test_path = path_join(data_dir, "test_pairs.jsonl");
    int rc = EXIT_RUNTIME;
    Scorer *scorer = NULL;
    DemoPairEval ev = {0};
    json_t *summary = json_object();
    double t_start = now_s();
    model_set_threads((int)threads);
    {
        char *cfg = path_join(init_dir, "config.json");
        int exists = file_exists(cfg);
        free(cfg);
        if (exists && !force) {
            fprintf(stderr, "oprm demo: %s already holds a demo; pass --force to overwrite it, or another --output\n",
                    out_dir);
            goto done;
        }
    }
    printf("oprm demo: a tiny ordinal reward model learns a graded task from scratch\n\n");

    init_default_options(&io, arch);
    io.seed = (uint64_t)seed;
    size_t n_params = 0;
    if (init_model_dir(init_dir, &io, &n_params, &err)) goto fail;
    printf("[1/5] model: %s, fresh random weights: hidden %d, %d layers, %d heads, %.2f M parameters\n", init_dir,
           io.hidden, io.layers, io.heads, n_params / 1e6);

    so.seed = (uint64_t)seed;
    so.n_train_pairs = (int)to.max_steps * to.batch_size; /* one epoch */
    SynthSummary ss;
    if (synth_write_task(data_dir, &so, &ss, &err)) goto fail;
    if (write_file_atomic(tpl_path, SYNTH_DEMO_TEMPLATE, strlen(SYNTH_DEMO_TEMPLATE), &err)) goto fail;
    printf("[2/5] task: %s: %d training pairs (%d flipped on purpose), %d held-out pairs, %d Best-of-N sets\n",
           data_dir, ss.n_train_pairs, ss.n_flipped, ss.n_test_pairs, ss.n_bon);
    print_example(so.digits, (uint64_t)seed);

    printf("[3/5] training (oprm train): %lld steps x %d pairs, pair loss -log P(chosen > rejected) with RgFT "
           "landscapes on %.0f%% of the pairs\n",
           (long long)to.max_steps, to.batch_size, 100 * to.label_fraction);
    fflush(stdout);
    to.model_dir = init_dir;
    to.data[0] = train_path;
    to.n_data = 1;
    to.output_dir = model_dir;
    to.template_path = tpl_path;
    to.seed = (uint64_t)seed;
    to.threads = (int)threads;
    to.overwrite_output_dir = force;
    TrainResult tr;
    int trc = train_run(&to, &tr, &err);
    if (trc == 130 || trc == 143) {
        fprintf(stderr, "oprm demo: interrupted; the partial run is in %s\n", model_dir);
        rc = trc;
        goto done;
    }
    if (trc) goto fail;
    printf("      %.1f s of training steps, %.0f tokens/s, loss %.3f -> %.3f\n", tr.step_s, tr.tokens_per_s,
           tr.first_loss, tr.last_loss);

    ScorerOptions sopt = {0};
    sopt.threads = (int)threads;
    sopt.device.kind = DEVICE_CPU; /* the demo is a CPU run end to end: same numbers everywhere */
    scorer = scorer_open(model_dir, &sopt, &err); /* oprm.json carries the template */
    if (!scorer) goto fail;
    if (demo_eval_pairs(scorer, test_path, 0, &ev, &err)) goto fail;
    printf("[4/5] held-out pairs (%zu): accuracy %.3f (mean of chosen > mean of rejected; target 0.90)\n", ev.n_pairs,
           ev.accuracy);
    printf("      by kind:");
    for (int k = 0; k < DEMO_N_KINDS; k++) printf("  %s %.3f", DEMO_KIND_NAMES[k], ev.kind_accuracy[k]);
    printf("\n      accuracy of P(c>r) > P(r>c) %.3f, mean P(c>r) %.3f, ECE %.3f; absolute quality (region with "
           "the most mass = true grade) %.3f\n",
           ev.accuracy_prob, ev.mean_p_win, ev.ece, ev.region_accuracy);
    static const char *const grade_titles[3] = {"bad responses (true region 1-3)", "normal responses (4-6)",
                                                "good responses (7-9)"};
    for (int g = 2; g >= 0; g--) {
        char title[96];
        snprintf(title, sizeof title, "mean distribution of %zu %s", ev.grade_n[g], grade_titles[g]);
        demo_draw_dist(stdout, title, ev.grade_dist[g], 40);
    }

    char *bon_path = path_join(data_dir, "test_bon.jsonl");
    DemoBon bon;
    int bon_rc = demo_eval_bon(scorer, bon_path, &bon, &err);
    free(bon_path);
    if (bon_rc) goto fail;
    printf("      Best-of-N (%zu held-out sets of %d, one good): the good one is picked by argmax mean - lambda*std "
           "%.3f (lambda 0), %.3f (0.5), %.3f (1); mean P(it is strictly the best) %.3f\n",
           bon.n_sets, so.bon_size, bon.picked_best[0], bon.picked_best[1], bon.picked_best[2], bon.mean_p_best);

    DemoAudit au;
    if (demo_audit(scorer, train_path, truth_path, (size_t)audit_pairs, &au, &err)) goto fail;
    printf("[5/5] audit of %zu training pairs: %zu were flipped on purpose\n", au.n_pairs, au.n_flipped);
    printf("      AUROC of the suspicion score %.3f (of P(r>c) alone %.3f); %zu of the %zu most suspicious pairs "
           "are flipped ones\n",
           au.auroc, au.auroc_p_loss, au.flipped_in_top, au.n_flipped);
    printf("      mean P(r>c): flipped pairs %.3f, others %.3f\n", au.mean_p_loss_flipped, au.mean_p_loss_clean);

    json_object_set_new(summary, "heldout_pair_accuracy", json_real(ev.accuracy));
    json_object_set_new(summary, "target_met", json_boolean(ev.accuracy >= 0.9));
    json_object_set_new(summary, "accuracy_by_prob", json_real(ev.accuracy_prob));
    json_object_set_new(summary, "ece", json_real(ev.ece));
    json_object_set_new(summary, "mean_p_win", json_real(ev.mean_p_win));
    json_object_set_new(summary, "region_accuracy", json_real(ev.region_accuracy));
    json_t *kinds = json_object();
    for (int k = 0; k < DEMO_N_KINDS; k++) json_object_set_new(kinds, DEMO_KIND_NAMES[k], json_real(ev.kind_accuracy[k]));
    json_object_set_new(summary, "accuracy_by_kind", kinds);
    json_object_set_new(summary, "best_of_n",
                        json_pack("{s:i, s:f, s:f, s:f, s:f}", "sets", (int)bon.n_sets, "picked_best_lambda_0",
                                  bon.picked_best[0], "picked_best_lambda_0.5", bon.picked_best[1],
                                  "picked_best_lambda_1", bon.picked_best[2], "mean_p_best", bon.mean_p_best));
    json_object_set_new(summary, "audit",
                        json_pack("{s:i, s:i, s:f, s:f, s:i}", "pairs", (int)au.n_pairs, "flipped", (int)au.n_flipped,
                                  "auroc", au.auroc, "auroc_p_loss", au.auroc_p_loss, "flipped_in_top",
                                  (int)au.flipped_in_top));
    json_object_set_new(summary, "training",
                        json_pack("{s:I, s:i, s:f, s:f, s:f, s:f}", "steps", (json_int_t)tr.steps, "batch",
                                  to.batch_size, "step_seconds", tr.step_s, "tokens_per_s", tr.tokens_per_s,
                                  "first_loss", tr.first_loss, "last_loss", tr.last_loss));
    json_object_set_new(summary, "total_seconds", json_real(now_s() - t_start));
    if (write_summary(out_dir, summary)) goto done;
    char *summary_text = json_dumps(summary, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    labels_path = path_join(data_dir, "test_labels.jsonl");
    int report_rc = demo_write_report(scorer, report_path, model_dir, test_path, &ev, labels_path, summary_text, &err);
    free(summary_text);
    if (report_rc) goto fail;
    printf("\nwrote %s/summary.json and %s; the model is in %s (oprm score --model %s ...). %.0f s in all.\n",
           out_dir, report_path, model_dir, model_dir, now_s() - t_start);
    if (ev.accuracy < 0.9)
        printf("note: held-out accuracy %.3f is below the 0.90 this demo normally reaches; try more --max-steps\n",
               ev.accuracy);
    rc = EXIT_OK;
    goto done;
fail:
    fprintf(stderr, "oprm demo: %s\n", err.msg);
done:
    demo_pair_eval_free(&ev);
    scorer_close(scorer);
    free(init_dir);
    free(report_path);
    free(labels_path);
    json_decref(summary);
    free(model_dir);
    free(data_dir);
    free(tpl_path);
    free(train_path);
    free(truth_path);
    free(test_path);
    return rc;
}
