/* `oprm score`, `eval`, `bon` and `audit` run as a user runs them (the binary
 * named by OPRM_BIN) on the untrained story-llama model and small data files
 * made from the first records of ../shared/data. The numbers mean nothing
 * about quality but every one is recomputed here independently: score lines
 * against the in-process scorer, eval/bon/audit against the score lines. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/reader.h"
#include "eval/score_data.h"
#include "eval/scorer.h"
#include "io/fileio.h"
#include "cli_testutil.h"
#include "test.h"
#include "util/vec.h"

static char tmpdir[64];
static char *model_dir;

static char *tmp(const char *name) {
    return path_join(tmpdir, name);
}

/* Runs `oprm ARGS` with stdout/stderr captured; returns the exit code. */
static int run(const char *args, char **out, char **err_text) {
    return cli_run_in(tmpdir, "", args, out, err_text);
}

static json_t *load_json(const char *path) {
    json_error_t jerr;
    json_t *o = json_load_file(path, 0, &jerr);
    return o ? o : json_object();
}

/* Copies records of a shared file: up to `per_subset` of each subset in
 * `subsets` (NULL = the first `per_subset` records). */
static void write_subset_file(const char *src_rel, const char *dst, const char *const *subsets, int per_subset) {
    char *src = path_join(shared_data_dir(), src_rel);
    char *text = slurp_text(src);
    FILE *f = fopen(dst, "w");
    int taken[8] = {0}, total = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        const char *sub = json_string_value(json_object_get(o, "subset"));
        int k = -1;
        if (!subsets) k = 0;
        else
            for (int i = 0; subsets[i]; i++)
                if (sub && !strcmp(sub, subsets[i])) k = i;
        if (k >= 0 && taken[k] < per_subset) {
            taken[k]++;
            total++;
            fprintf(f, "%s\n", line);
        }
        json_decref(o);
        if (!subsets && total >= per_subset) break;
    }
    fclose(f);
    free(text);
    free(src);
}

/* P(c>r), P(r>c) from two distributions, by the definition (double loop). */
static void pair_probs(const json_t *dc, const json_t *dr, double *win, double *loss) {
    *win = *loss = 0;
    for (int i = 0; i < 9; i++)
        for (int j = 0; j < 9; j++) {
            double p = json_number_value(json_array_get(dc, (size_t)i)) * json_number_value(json_array_get(dr, (size_t)j));
            if (i > j) *win += p;
            if (i < j) *loss += p;
        }
}

/* Equal-width 10-bin ECE, bin = floor(10 c), 1.0 in the last bin. */
static double ece10(const double *conf, const double *out, size_t n) {
    double sc[10] = {0}, so[10] = {0}, cnt[10] = {0}, e = 0;
    for (size_t i = 0; i < n; i++) {
        int b = (int)(conf[i] * 10);
        if (b > 9) b = 9;
        sc[b] += conf[i];
        so[b] += out[i];
        cnt[b]++;
    }
    for (int b = 0; b < 10; b++)
        if (cnt[b]) e += cnt[b] / (double)n * fabs(sc[b] / cnt[b] - so[b] / cnt[b]);
    return e;
}

static void test_score_matches_scorer(void) {
    char *data = tmp("pairs.jsonl"), *out = tmp("pairs.score.jsonl");
    StrBuf args = {0};
    sb_printf(&args, "score --model %s --data %s --max-len 256 --batch-size 5 --threads 2 --output %s", model_dir,
              data, out);
    char *so = NULL, *se = NULL;
    int rc = run(args.s, &so, &se);
    CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s", se);
    CHECK_STR_CONTAINS(se, "18 responses of 9 records");
    json_t *lines = load_jsonl(out);
    CHECK(json_array_size(lines) == 18);
    /* The same items through the scorer in-process, all in one call. */
    OprmError err = {{0}};
    DataOptions o;
    data_options_default(&o);
    DataSet ds = {0};
    CHECK(data_load(data, &o, &ds, NULL, &err) == 0);
    ScorerOptions so_opt = {.max_len = 256};
    Scorer *s = scorer_open(model_dir, &so_opt, &err);
    CHECK(s != NULL && ds.n == 9);
    if (s && ds.n == 9) {
        ScoreRequest items[18];
        ScoreTurn turns[18][8];
        for (size_t r = 0; r < 9; r++)
            for (size_t k = 0; k < 2; k++) score_request_of(&ds.recs[r], k, turns[2 * r + k], &items[2 * r + k]);
        ScoreResult res[18];
        CHECK(scorer_score(s, items, 18, res, &err) == 0);
        int truncated = 0;
        for (size_t i = 0; i < 18 && i < json_array_size(lines); i++) {
            json_t *l = json_array_get(lines, i);
            CHECK(!strcmp(json_string_value(json_object_get(l, "side")), i % 2 ? "rejected" : "chosen"));
            CHECK(!strcmp(json_string_value(json_object_get(l, "id")), ds.recs[i / 2].id));
            CHECK(json_num(l, "record") == (double)(i / 2) && json_num(l, "line") == (double)(i / 2 + 1));
            json_t *dist = json_object_get(l, "distribution");
            CHECK(json_array_size(dist) == 9);
            for (int k = 0; k < 9; k++) CHECK_NEAR(json_number_value(json_array_get(dist, (size_t)k)), res[i].p[k], 1e-6, 0);
            CHECK_NEAR(json_num(l, "mean"), res[i].mean, 1e-6, 0);
            CHECK_NEAR(json_num(l, "std"), res[i].std, 1e-6, 0);
            CHECK_NEAR(json_num(l, "entropy"), res[i].entropy, 1e-6, 0);
            CHECK_NEAR(json_num(l, "bimodality"), res[i].bimodality, 1e-6, 0);
            CHECK(json_num(l, "mode") == res[i].mode);
            CHECK(json_is_true(json_object_get(l, "truncated")) == (res[i].truncated != 0));
            CHECK(json_is_true(json_object_get(l, "bimodal")) == (res[i].bimodality >= 0.05));
            CHECK(json_num(l, "n_tokens") == res[i].n_tokens);
            truncated += res[i].truncated;
        }
        /* llmbar prompts are long: --max-len 256 truncates some, and the count is reported. */
        CHECK(truncated > 0);
        char want[64];
        snprintf(want, sizeof want, "%d truncated to --max-len 256", truncated);
        CHECK_STR_CONTAINS(se, want);
    }
    scorer_close(s);
    dataset_free(&ds);
    json_decref(lines);
    free(so);
    free(se);
    /* Labelled responses and the plain {"prompt", "response"} layout: one line each. */
    char *simple = tmp("simple.jsonl");
    FILE *f = fopen(simple, "w");
    fprintf(f, "{\"prompt\": \"Tell me a story.\", \"response\": \"The cat sat.\"}\n"
               "{\"prompt\": \"Tell me a story.\", \"response\": \"Once upon a time.\"}\n");
    fclose(f);
    sb_clear(&args);
    sb_printf(&args, "score --model %s --data %s", model_dir, simple);
    rc = run(args.s, &so, &se);
    CHECK(rc == 0);
    json_t *sl = json_array();
    for (char *line = strtok(so, "\n"); line; line = strtok(NULL, "\n")) json_array_append_new(sl, json_loads(line, 0, NULL));
    CHECK(json_array_size(sl) == 2);
    const char *side = json_string_value(json_object_get(json_array_get(sl, 1), "side"));
    CHECK(side && !strcmp(side, "response"));
    CHECK(json_object_get(json_array_get(sl, 0), "label") == NULL);
    CHECK(json_num(json_array_get(sl, 0), "mean") != json_num(json_array_get(sl, 1), "mean"));
    /* --chat-format and --template change the scoring prompt (and so n_tokens). */
    double plain_tokens = json_num(json_array_get(sl, 0), "n_tokens");
    json_decref(sl);
    free(so);
    free(se);
    char *tpl = tmp("judge.tpl");
    f = fopen(tpl, "w");
    fprintf(f, "[system]\nJudge.\n[user]\n{conversation}\n{response}\n[cue]\nRating: ");
    fclose(f);
    const char *variants[] = {"--chat-format chatml", "--template"};
    for (int v = 0; v < 2; v++) {
        sb_clear(&args);
        sb_printf(&args, "score --model %s --data %s %s %s", model_dir, simple, variants[v], v ? tpl : "");
        rc = run(args.s, &so, &se);
        CHECK(rc == 0);
        json_t *first = json_loads(so, JSON_DISABLE_EOF_CHECK, NULL);
        CHECK(first && json_num(first, "n_tokens") != plain_tokens);
        json_decref(first);
        free(so);
        free(se);
    }
    sb_clear(&args);
    sb_printf(&args, "score --model %s --data %s --chat-format klingon", model_dir, simple);
    CHECK(run(args.s, NULL, &se) == 2);
    CHECK_STR_CONTAINS(se, "--chat-format");
    free(se);
    free(tpl);
    free(simple);
    sb_free(&args);
    free(data);
    free(out);
}

typedef struct {
    double acc_sum, n;
} Acc;

static void test_eval_recomputed(void) {
    char *pairs = tmp("pairs.jsonl"), *hhh = tmp("hhh3.jsonl"), *labels = tmp("labels.jsonl");
    char *score_p = tmp("pairs.score.jsonl"), *score_h = tmp("hhh3.score.jsonl"), *score_l = tmp("labels.score.jsonl");
    char *summary = tmp("eval.json"), *report = tmp("report.html");
    /* Scored with the same settings as eval below (the score test used other
     * batching, which may change results within the 1e-6 batching tolerance). */
    StrBuf args = {0};
    sb_printf(&args, "score --model %s --data %s --max-len 256 -o %s", model_dir, pairs, score_p);
    CHECK(run(args.s, NULL, NULL) == 0);
    sb_clear(&args);
    sb_printf(&args, "score --model %s --data %s --max-len 256 -o %s", model_dir, hhh, score_h);
    CHECK(run(args.s, NULL, NULL) == 0);
    sb_clear(&args);
    sb_printf(&args, "score --model %s --data %s --max-len 256 -o %s", model_dir, labels, score_l);
    CHECK(run(args.s, NULL, NULL) == 0);
    sb_clear(&args);
    sb_printf(&args, "eval --model %s --data %s %s %s --max-len 256 --rewardbench --report %s -o %s", model_dir,
              pairs, hhh, labels, report, summary);
    char *se = NULL;
    int rc = run(args.s, NULL, &se);
    CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s", se);
    free(se);
    json_t *sum = load_json(summary);
    /* Recompute from the score lines: pairs.jsonl has 3 subsets x 3 pairs, hhh3 3 pairs. */
    json_t *lp = load_jsonl(score_p), *lh = load_jsonl(score_h), *ll = load_jsonl(score_l);
    json_t *all = json_array();
    json_array_extend(all, lp);
    json_array_extend(all, lh);
    size_t n = json_array_size(all) / 2;
    CHECK(n == 12);
    double correct = 0, correct_p = 0, sum_win = 0, conf[24], outc[24], conf1[12], ones[12];
    const char *names[4] = {"llmbar-natural", "llmbar-adver-neighbor", "mtbench-human", "hhh-harmless"};
    Acc sub[4] = {{0}}, file[2] = {{0}};
    int truncated = 0, truncated_pairs = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(all, 2 * i), *r = json_array_get(all, 2 * i + 1);
        double win, loss;
        pair_probs(json_object_get(c, "distribution"), json_object_get(r, "distribution"), &win, &loss);
        int ok = json_num(c, "mean") > json_num(r, "mean");
        correct += ok;
        correct_p += win > loss;
        sum_win += win;
        conf[2 * i] = win;
        outc[2 * i] = 1;
        conf[2 * i + 1] = loss;
        outc[2 * i + 1] = 0;
        conf1[i] = win;
        ones[i] = 1;
        truncated_pairs += json_is_true(json_object_get(c, "truncated")) || json_is_true(json_object_get(r, "truncated"));
        const char *s = json_string_value(json_object_get(c, "subset"));
        for (int k = 0; k < 4; k++)
            if (s && !strcmp(s, names[k])) {
                sub[k].acc_sum += ok;
                sub[k].n++;
            }
        file[i < 9 ? 0 : 1].acc_sum += ok;
        file[i < 9 ? 0 : 1].n++;
    }
    for (size_t i = 0; i < json_array_size(all); i++) truncated += json_is_true(json_object_get(json_array_get(all, i), "truncated"));
    for (size_t i = 0; i < json_array_size(ll); i++) truncated += json_is_true(json_object_get(json_array_get(ll, i), "truncated"));
    CHECK(json_num(sum, "n") == 12);
    CHECK_NEAR(json_num(sum, "accuracy"), correct / 12, 1e-12, 0);
    CHECK_NEAR(json_num(sum, "accuracy_by_prob"), correct_p / 12, 1e-12, 0);
    CHECK_NEAR(json_num(sum, "mean_p_chosen_better"), sum_win / 12, 1e-12, 0);
    CHECK_NEAR(json_num(sum, "ece"), ece10(conf1, ones, 12), 1e-12, 0);
    CHECK_NEAR(json_num(sum, "ece"), 1 - sum_win / 12, 1e-12, 0);
    CHECK_NEAR(json_num(sum, "ece_symmetric"), ece10(conf, outc, 24), 1e-12, 0);
    CHECK(json_num(sum, "responses") == 24 + (double)json_array_size(ll));
    CHECK(json_num(sum, "truncated") == truncated);
    CHECK(json_num(sum, "truncated_pairs") == truncated_pairs);
    CHECK_STR_CONTAINS(json_string_value(json_object_get(sum, "ece_definition")), "metric_pair_ece_symmetric");
    json_t *subsets = json_object_get(sum, "subsets");
    CHECK(json_object_size(subsets) == 4);
    for (int k = 0; k < 4; k++) {
        json_t *sj = json_object_get(subsets, names[k]);
        CHECK(json_num(sj, "n") == 3 && sub[k].n == 3);
        CHECK_NEAR(json_num(sj, "accuracy"), sub[k].acc_sum / 3, 1e-12, 0);
    }
    json_t *files = json_object_get(sum, "files");
    CHECK(json_array_size(files) == 3);
    CHECK_NEAR(json_num(json_object_get(json_array_get(files, 0), "pairs"), "accuracy"), file[0].acc_sum / 9, 1e-12, 0);
    CHECK_NEAR(json_num(json_object_get(json_array_get(files, 1), "pairs"), "accuracy"), file[1].acc_sum / 3, 1e-12, 0);
    CHECK(json_is_null(json_object_get(json_array_get(files, 2), "pairs")));
    CHECK(json_num(json_object_get(json_array_get(files, 2), "kinds"), "points") == (double)json_array_size(ll));
    /* Labelled responses: prometheus labels; counts per label add up. */
    double labelled = 0;
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(sum, "labels"), key, v) labelled += json_num(v, "n");
    CHECK(labelled == (double)json_array_size(ll));
    /* RewardBench: llmbar-natural (100) and llmbar-adver-neighbor (134) are Chat Hard. */
    json_t *rb = json_object_get(sum, "rewardbench");
    double hard = (100 * sub[0].acc_sum / 3 + 134 * sub[1].acc_sum / 3) / 234;
    CHECK_NEAR(json_num(json_object_get(rb, "sections"), "Chat Hard"), hard, 1e-12, 0);
    CHECK(json_is_null(json_object_get(json_object_get(rb, "sections"), "Chat")));
    CHECK_NEAR(json_num(rb, "score"), hard / 4, 1e-12, 0);
    CHECK(json_is_false(json_object_get(rb, "complete")));
    CHECK(json_array_size(json_object_get(rb, "subsets_ignored")) == 2);
    /* The report: one self-contained HTML page with the plots. */
    char *html = slurp_text(report);
    CHECK(!strncmp(html, "<!DOCTYPE html>", 15));
    CHECK_STR_CONTAINS(html, "</html>");
    size_t svgs = 0;
    for (const char *p = html; (p = strstr(p, "<svg ")); p++) svgs++;
    CHECK(svgs == 4); /* reliability, chosen vs rejected, per label, per subset */
    CHECK(strstr(html, "<script") == NULL);
    CHECK_STR_CONTAINS(html, "llmbar-adver-neighbor");
    free(html);
    json_decref(all);
    json_decref(lp);
    json_decref(lh);
    json_decref(ll);
    json_decref(sum);
    sb_free(&args);
    free(pairs);
    free(hhh);
    free(labels);
    free(score_p);
    free(score_h);
    free(score_l);
    free(summary);
    free(report);
}

/* P(candidate i strictly best) by enumerating all 9^3 outcomes. */
static void brute_p_best(json_t *d[3], double p_best[3]) {
    p_best[0] = p_best[1] = p_best[2] = 0;
    for (int a = 0; a < 9; a++)
        for (int b = 0; b < 9; b++)
            for (int c = 0; c < 9; c++) {
                double p = json_number_value(json_array_get(d[0], (size_t)a)) *
                           json_number_value(json_array_get(d[1], (size_t)b)) *
                           json_number_value(json_array_get(d[2], (size_t)c));
                if (a > b && a > c) p_best[0] += p;
                if (b > a && b > c) p_best[1] += p;
                if (c > a && c > b) p_best[2] += p;
            }
}

static void test_bon(void) {
    char *data = tmp("bon.jsonl"), *score = tmp("bon.score.jsonl"), *out = tmp("bon.out.jsonl"), *summary = tmp("bon.sum.json");
    StrBuf args = {0};
    sb_printf(&args, "score --model %s --data %s -o %s", model_dir, data, score);
    CHECK(run(args.s, NULL, NULL) == 0);
    sb_clear(&args);
    sb_printf(&args, "bon --model %s --data %s --risk 0.5 -o %s --summary %s", model_dir, data, out, summary);
    char *se = NULL;
    CHECK(run(args.s, NULL, &se) == 0);
    CHECK_STR_CONTAINS(se, "4 sets (12 candidates)");
    free(se);
    json_t *sl = load_jsonl(score), *bl = load_jsonl(out), *sum = load_json(summary);
    CHECK(json_array_size(sl) == 12 && json_array_size(bl) == 4);
    int chosen_best = 0;
    for (size_t s = 0; s < json_array_size(bl); s++) {
        json_t *b = json_array_get(bl, s), *cands = json_object_get(b, "candidates");
        json_t *d[3];
        double best_u = -1e300;
        int want = -1;
        for (int i = 0; i < 3; i++) {
            json_t *l = json_array_get(sl, 3 * s + (size_t)i);
            d[i] = json_object_get(l, "distribution");
            double u = json_num(l, "mean") - 0.5 * json_num(l, "std");
            if (u > best_u) {
                best_u = u;
                want = i;
            }
        }
        double pb[3], total = json_num(b, "p_tie_top");
        brute_p_best(d, pb);
        for (int i = 0; i < 3; i++) {
            CHECK_NEAR(json_num(json_array_get(cands, (size_t)i), "p_best"), pb[i], 1e-9, 0);
            total += json_num(json_array_get(cands, (size_t)i), "p_best");
        }
        CHECK_NEAR(total, 1.0, 1e-12, 0);
        CHECK(json_num(b, "p_tie_top") > 0); /* untrained: ties at the top are likely */
        CHECK(json_num(b, "chosen") == want);
        CHECK_NEAR(json_num(b, "utility"), best_u, 1e-9, 0);
        CHECK(json_is_true(json_object_get(b, "chosen_is_best")) == (want == 0));
        chosen_best += want == 0;
    }
    CHECK(json_num(sum, "sets") == 4 && json_num(sum, "chosen_is_best") == chosen_best);
    int trunc = 0;
    for (size_t i = 0; i < json_array_size(sl); i++) trunc += json_is_true(json_object_get(json_array_get(sl, i), "truncated"));
    CHECK(json_num(sum, "truncated") == trunc);
    CHECK_NEAR(json_num(sum, "accuracy"), chosen_best / 4.0, 1e-15, 0);
    CHECK_NEAR(json_num(sum, "risk"), 0.5, 0, 0);
    json_decref(sl);
    json_decref(bl);
    json_decref(sum);
    sb_free(&args);
    free(data);
    free(score);
    free(out);
    free(summary);
}

static void test_audit(void) {
    char *data = tmp("audit.jsonl"), *score = tmp("audit.score.jsonl"), *out = tmp("audit.out.jsonl"),
         *summary = tmp("audit.sum.json");
    StrBuf args = {0};
    sb_printf(&args, "score --model %s --data %s -o %s", model_dir, data, score);
    CHECK(run(args.s, NULL, NULL) == 0);
    sb_clear(&args);
    sb_printf(&args, "audit --model %s --data %s --flipped-key flipped -o %s --summary %s", model_dir, data, out, summary);
    char *se = NULL;
    CHECK(run(args.s, NULL, &se) == 0);
    CHECK_STR_CONTAINS(se, "AUROC of the suspicion score");
    free(se);
    json_t *sl = load_jsonl(score), *al = load_jsonl(out), *sum = load_json(summary);
    size_t n = json_array_size(al);
    CHECK(n == 8 && json_array_size(sl) == 16);
    double prev = 1e300, susp[8] = {0};
    int flipped[8] = {0}, look_flipped = 0, bimodal = 0;
    for (size_t k = 0; k < n && k < 8; k++) {
        json_t *a = json_array_get(al, k);
        CHECK(json_num(a, "rank") == (double)k + 1);
        double s = json_num(a, "suspicion");
        CHECK(s <= prev);
        prev = s;
        size_t rec = (size_t)json_num(a, "record");
        json_t *c = json_array_get(sl, 2 * rec), *r = json_array_get(sl, 2 * rec + 1);
        double win, loss;
        pair_probs(json_object_get(c, "distribution"), json_object_get(r, "distribution"), &win, &loss);
        CHECK_NEAR(json_num(a, "p_chosen_better"), win, 1e-9, 0);
        CHECK_NEAR(json_num(a, "p_rejected_better"), loss, 1e-9, 0);
        double bc = json_num(c, "bimodality"), br = json_num(r, "bimodality");
        CHECK_NEAR(json_num(a, "bimodality_chosen"), bc, 1e-12, 0);
        CHECK_NEAR(s, loss + (bc > br ? bc : br), 1e-9, 0);
        /* the file flips records 0, 3, 6 */
        CHECK(json_is_true(json_object_get(a, "flipped")) == (rec % 3 == 0));
        susp[k] = s;
        flipped[k] = rec % 3 == 0;
        look_flipped += loss > win;
        bimodal += bc >= 0.05 || br >= 0.05;
    }
    /* AUROC by counting every (flipped, not flipped) pair of rows. */
    double wins = 0, pairs = 0;
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 8; j++)
            if (flipped[i] && !flipped[j]) {
                pairs++;
                wins += susp[i] > susp[j] ? 1 : susp[i] == susp[j] ? 0.5 : 0;
            }
    CHECK(json_num(sum, "flipped_known") == 3 && pairs == 15);
    CHECK_NEAR(json_num(sum, "auroc_suspicion"), wins / pairs, 1e-12, 0);
    CHECK(json_num(sum, "look_flipped") == look_flipped);
    CHECK(json_num(sum, "bimodal_pairs") == bimodal);
    CHECK(json_num(sum, "pairs") == 8);
    int trunc = 0;
    for (size_t i = 0; i < json_array_size(sl); i++) trunc += json_is_true(json_object_get(json_array_get(sl, i), "truncated"));
    CHECK(json_num(sum, "truncated_responses") == trunc);
    /* --top 2 writes the two most suspicious only. */
    sb_clear(&args);
    sb_printf(&args, "audit --model %s --data %s --top 2 --no-progress", model_dir, data);
    char *so = NULL;
    CHECK(run(args.s, &so, NULL) == 0);
    size_t lines = 0;
    for (const char *p = so; (p = strchr(p, '\n')); p++) lines++;
    CHECK(lines == 2);
    CHECK_STR_CONTAINS(so, json_string_value(json_object_get(json_array_get(al, 0), "id")));
    free(so);
    json_decref(sl);
    json_decref(al);
    json_decref(sum);
    sb_free(&args);
    free(data);
    free(score);
    free(out);
    free(summary);
}

static void test_errors(void) {
    char *se = NULL, *so = NULL;
    char *pairs = tmp("pairs.jsonl"), *bad = tmp("bad.jsonl"), *labels = tmp("labels.jsonl");
    FILE *f = fopen(bad, "w");
    fprintf(f, "{\"prompt\": \"Hi\", \"chosen\": \"a\", \"rejected\": \"b\"}\n{\"prompt\": \"Hi\", \"chosen\": 3, "
               "\"rejected\": \"b\"}\n");
    fclose(f);
    const char *cmds[] = {"score", "eval", "bon", "audit"};
    StrBuf args = {0};
    for (int i = 0; i < 4; i++) {
        sb_clear(&args);
        sb_printf(&args, "%s --help", cmds[i]);
        CHECK(run(args.s, &so, NULL) == 0);
        CHECK_STR_CONTAINS(so, "usage: oprm");
        CHECK_STR_CONTAINS(so, "--max-len");
        CHECK_STR_CONTAINS(so, "--chosen-key");
        free(so);
        /* missing --model: usage error */
        sb_clear(&args);
        sb_printf(&args, "%s --data %s", cmds[i], pairs);
        CHECK(run(args.s, NULL, &se) == 2);
        CHECK_STR_CONTAINS(se, "--model DIR is required");
        free(se);
        /* a bad record: runtime error naming file:line and what to do */
        sb_clear(&args);
        sb_printf(&args, "%s --model %s --data %s", cmds[i], model_dir, bad);
        CHECK(run(args.s, NULL, &se) == 1);
        CHECK_STR_CONTAINS(se, "bad.jsonl:2");
        CHECK_STR_CONTAINS(se, "--skip-invalid");
        free(se);
        sb_clear(&args);
        sb_printf(&args, "%s --model %s --data %s --bogus", cmds[i], model_dir, pairs);
        CHECK(run(args.s, NULL, &se) == 2);
        CHECK_STR_CONTAINS(se, "unknown option --bogus");
        free(se);
    }
    /* The progress bar (forced on; normally only on a terminal) shows count, rate and ETA. */
    sb_clear(&args);
    sb_printf(&args, "score --model %s --data %s --max-len 128 --progress", model_dir, labels);
    CHECK(run(args.s, NULL, &se) == 0);
    CHECK_STR_CONTAINS(se, "4/4 records");
    CHECK_STR_CONTAINS(se, "/s");
    CHECK_STR_CONTAINS(se, "ETA");
    free(se);
    /* --skip-invalid goes on with the valid record. */
    sb_clear(&args);
    sb_printf(&args, "score --model %s --data %s --skip-invalid", model_dir, bad);
    CHECK(run(args.s, &so, &se) == 0);
    CHECK_STR_CONTAINS(se, "skipped");
    CHECK_STR_CONTAINS(so, "\"side\":\"rejected\"");
    free(so);
    free(se);
    sb_clear(&args);
    sb_printf(&args, "score --model /nonexistent/model --data %s", pairs);
    CHECK(run(args.s, NULL, &se) == 1);
    CHECK_STR_CONTAINS(se, "cannot load the model");
    free(se);
    sb_clear(&args);
    sb_printf(&args, "eval --model %s --data %s /nonexistent/data.jsonl", model_dir, pairs);
    CHECK(run(args.s, NULL, &se) == 1);
    CHECK_STR_CONTAINS(se, "check the path given to --data");
    free(se);
    sb_clear(&args);
    sb_printf(&args, "bon --model %s --data %s --risk -1", model_dir, pairs);
    CHECK(run(args.s, NULL, &se) == 2);
    CHECK_STR_CONTAINS(se, "--risk");
    free(se);
    sb_clear(&args);
    sb_printf(&args, "audit --model %s --data %s", model_dir, labels);
    CHECK(run(args.s, NULL, &se) == 1);
    CHECK_STR_CONTAINS(se, "not pairs");
    free(se);
    sb_clear(&args);
    sb_printf(&args, "score --model %s --data %s --max-len", model_dir, pairs);
    CHECK(run(args.s, NULL, &se) == 2);
    CHECK_STR_CONTAINS(se, "--max-len needs a value");
    free(se);
    /* A failed run leaves no output file behind. */
    char *out = tmp("never.jsonl");
    sb_clear(&args);
    sb_printf(&args, "score --model /nonexistent --data %s -o %s", pairs, out);
    CHECK(run(args.s, NULL, NULL) == 1);
    CHECK(!file_exists(out));
    free(out);
    sb_free(&args);
    free(pairs);
    free(bad);
    free(labels);
}

/* hhh pairs -> best-of-N sets and an audit file with flipped pairs. */
static void write_derived_files(void) {
    char *src = path_join(shared_data_dir(), "prefs/hhh.jsonl");
    char *text = slurp_text(src);
    json_t *recs[8];
    int n = 0;
    for (char *line = strtok(text, "\n"); line && n < 8; line = strtok(NULL, "\n")) recs[n++] = json_loads(line, 0, NULL);
    char *bon = tmp("bon.jsonl"), *audit = tmp("audit.jsonl");
    FILE *fb = fopen(bon, "w"), *fa = fopen(audit, "w");
    for (int i = 0; i < n; i++) {
        if (i < 4) {
            json_t *o = json_pack("{s:O, s:O, s:O, s:[O,O]}", "id", json_object_get(recs[i], "id"), "prompt",
                                  json_object_get(recs[i], "prompt"), "best", json_object_get(recs[i], "chosen"),
                                  "others", json_object_get(recs[i], "rejected"),
                                  json_object_get(recs[i + 4], "rejected"));
            char *s = json_dumps(o, JSON_COMPACT);
            fprintf(fb, "%s\n", s);
            free(s);
            json_decref(o);
        }
        json_t *o = json_deep_copy(recs[i]);
        int flip = i % 3 == 0;
        if (flip) {
            json_object_set(o, "chosen", json_object_get(recs[i], "rejected"));
            json_object_set(o, "rejected", json_object_get(recs[i], "chosen"));
        }
        json_object_set_new(o, "flipped", json_boolean(flip));
        char *s = json_dumps(o, JSON_COMPACT);
        fprintf(fa, "%s\n", s);
        free(s);
        json_decref(o);
        json_decref(recs[i]);
    }
    fclose(fb);
    fclose(fa);
    free(bon);
    free(audit);
    free(text);
    free(src);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/oprm_evalcli_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    model_dir = path_join(shared_data_dir(), "models/story-llama");
    /* The model is tiny: one thread per run avoids OpenMP spinning on a busy
     * machine (the score test passes --threads 2 to exercise the flag). */
    setenv("OMP_NUM_THREADS", "1", 1);
    static const char *const llmbar[] = {"llmbar-natural", "llmbar-adver-neighbor", "mtbench-human", NULL};
    char *p = tmp("pairs.jsonl"), *h = tmp("hhh3.jsonl"), *l = tmp("labels.jsonl");
    /* Every test scores with the shared story-llama on files cut from the shared prefs and labels. */
    static const char *const needs[] = {"models/story-llama", "prefs/llmbar.jsonl", "prefs/hhh.jsonl",
                                        "labels/prometheus.jsonl", NULL};
    const char *missing = shared_data_missing(needs), *need = missing ? missing : needs[0];
    if (!missing) {
        write_subset_file("prefs/llmbar.jsonl", p, llmbar, 3);
        write_subset_file("prefs/hhh.jsonl", h, NULL, 3);
        write_subset_file("labels/prometheus.jsonl", l, NULL, 4);
        write_derived_files();
    }
    free(p);
    free(h);
    free(l);
    RUN_SHARED(test_score_matches_scorer, need);
    RUN_SHARED(test_eval_recomputed, need);
    RUN_SHARED(test_bon, need);
    RUN_SHARED(test_audit, need);
    RUN_SHARED(test_errors, need);
    StrBuf rm = {0};
    sb_printf(&rm, "rm -rf '%s'", tmpdir);
    if (system(rm.s) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    sb_free(&rm);
    free(model_dir);
    return test_summary();
}
