/* Unit tests of the evaluation arithmetic (src/eval): AUROC and the audit
 * ranking, RewardBench section scores, pair summaries, Best-of-N, label
 * statistics and the HTML/SVG report. Every expected value is worked out by
 * hand in the comments. */
#include <stdlib.h>
#include <string.h>

#include "eval/audit.h"
#include "eval/bon.h"
#include "eval/eval_pairs.h"
#include "eval/report_html.h"
#include "eval/rewardbench.h"
#include "eval/svg.h"
#include "test.h"

static ScoreResult delta(int level) {
    ScoreResult r = {0};
    r.p[level - 1] = 1;
    r.mean = level;
    r.mode = level;
    return r;
}

static ScoreResult two_levels(int a, double pa, int b) {
    ScoreResult r = {0};
    r.p[a - 1] = pa;
    r.p[b - 1] = 1 - pa;
    r.mean = a * pa + b * (1 - pa);
    r.std = fabs((double)(a - b)) * sqrt(pa * (1 - pa));
    r.mode = pa >= 0.5 ? a : b;
    return r;
}

static void test_auroc_hand(void) {
    OprmError err = {{0}};
    double a = -1;
    /* Perfect separation. */
    double s1[] = {0.9, 0.8, 0.2, 0.1};
    int p1[] = {1, 1, 0, 0};
    CHECK(auroc(s1, p1, 4, &a, &err) == 0);
    CHECK_NEAR(a, 1.0, 1e-15, 0);
    /* Reversed. */
    int p2[] = {0, 0, 1, 1};
    CHECK(auroc(s1, p2, 4, &a, &err) == 0);
    CHECK_NEAR(a, 0.0, 1e-15, 0);
    /* All tied: every positive-negative comparison counts 1/2. */
    double s3[] = {0.5, 0.5, 0.5};
    int p3[] = {1, 0, 0};
    CHECK(auroc(s3, p3, 3, &a, &err) == 0);
    CHECK_NEAR(a, 0.5, 1e-15, 0);
    /* Positives {0.9, 0.5}, negatives {0.5, 0.1}: 0.9>0.5, 0.9>0.1, 0.5=0.5 (1/2),
     * 0.5>0.1 -> 3.5 / 4 = 0.875 (order of input must not matter). */
    double s4[] = {0.5, 0.1, 0.9, 0.5};
    int p4[] = {0, 0, 1, 1};
    CHECK(auroc(s4, p4, 4, &a, &err) == 0);
    CHECK_NEAR(a, 0.875, 1e-15, 0);
    /* Positives {3, 1}, negatives {2, 2, 0}: 3 beats all 3, 1 beats only 0 ->
     * 4 / 6. */
    double s5[] = {3, 2, 1, 2, 0};
    int p5[] = {1, 0, 1, 0, 0};
    CHECK(auroc(s5, p5, 5, &a, &err) == 0);
    CHECK_NEAR(a, 4.0 / 6.0, 1e-15, 0);
    /* Without negatives (or positives) there is no AUROC. */
    int all[] = {1, 1, 1, 1};
    CHECK(auroc(s1, all, 4, &a, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "positives and negatives");
}

static void test_audit_rank(void) {
    /* Pair 0: chosen at 9, rejected at 1 -> P(r>c) = 0, suspicion 0.
     * Pair 1: chosen at 1, rejected at 9 -> P(r>c) = 1, suspicion 1.
     * Pair 2: chosen bimodal 0.5 at 2 / 0.5 at 8, rejected at 5: P(r>c) = 0.5;
     *         bimodality_c = min(0.5, 0.5) - p(5) = 0.5 -> suspicion 1.0 (ties pair 1).
     * Pair 3: same as pair 0. */
    ScoreResult c[4] = {delta(9), delta(1), two_levels(2, 0.5, 8), delta(9)};
    ScoreResult r[4] = {delta(1), delta(9), delta(5), delta(1)};
    c[2].bimodality = 0.5;
    AuditRow rows[4];
    for (int i = 0; i < 4; i++) rows[i] = audit_row_of((size_t)i, &c[i], &r[i]);
    CHECK_NEAR(rows[0].suspicion, 0.0, 1e-15, 0);
    CHECK_NEAR(rows[1].suspicion, 1.0, 1e-15, 0);
    CHECK_NEAR(rows[2].p_loss, 0.5, 1e-15, 0);
    CHECK_NEAR(rows[2].suspicion, 1.0, 1e-15, 0);
    CHECK(rows[2].bimodal_c == 1 && rows[2].bimodal_r == 0);
    audit_rank(rows, 4);
    /* Equal suspicion keeps file order: 1, 2, then 0, 3. */
    CHECK(rows[0].record == 1 && rows[1].record == 2 && rows[2].record == 0 && rows[3].record == 3);
}

static void test_rewardbench_hand(void) {
    CHECK(rewardbench_section_of("llmbar-natural") == 1);
    CHECK(rewardbench_section_of("mt-bench-hard") == 1);
    CHECK(rewardbench_section_of("mt-bench-med") == 0);
    CHECK(rewardbench_section_of("math-prm") == 3);
    CHECK(rewardbench_section_of("mtbench-human") == -1);
    CHECK(rewardbench_section_of(NULL) == -1);
    CHECK(rewardbench_weight("math-prm") == 984); /* 6 x 164: math weighs as much as code */
    CHECK(rewardbench_weight("xstest-should-refuse") == 154);
    CHECK(rewardbench_weight("xstest-should-respond") == 250);
    SubsetAccuracy in[] = {
        {"alpacaeval-easy", 1.0},      /* Chat: (100*1 + 28*0.5) / 128 = 114/128 = 0.890625 */
        {"mt-bench-easy", 0.5},
        {"llmbar-natural", 0.6},       /* Chat Hard: (100*0.6 + 46*0.2) / 146 = 69.2/146 */
        {"llmbar-adver-manual", 0.2},
        {"xstest-should-refuse", 1.0}, /* Safety: (154*1 + 250*0) / 404 */
        {"xstest-should-respond", 0.0},
        {"math-prm", 0.5},             /* Reasoning: (984*0.5 + 164*1) / 1148 = 656/1148 */
        {"hep-python", 1.0},
        {"not-a-subset", 0.0},         /* ignored */
    };
    RewardBenchScores s;
    rewardbench_scores(in, 9, &s);
    double chat = 114.0 / 128, hard = 69.2 / 146, safety = 154.0 / 404, reason = 656.0 / 1148;
    CHECK_NEAR(s.section[0], chat, 1e-15, 0);
    CHECK_NEAR(s.section[1], hard, 1e-15, 0);
    CHECK_NEAR(s.section[2], safety, 1e-15, 0);
    CHECK_NEAR(s.section[3], reason, 1e-15, 0);
    CHECK_NEAR(s.score, (chat + hard + safety + reason) / 4, 1e-15, 0);
    CHECK(s.complete == 1 && s.used == 8);
    CHECK(s.present[0] == 2 && s.expected[0] == 5 && s.expected[1] == 6 && s.expected[2] == 5 && s.expected[3] == 7);
    /* Only Chat Hard present: the other sections count 0 (calculate_scores_per_section). */
    SubsetAccuracy only[] = {{"llmbar-adver-GPTInst", 0.5}, {"llmbar-adver-GPTOut", 1.0}};
    rewardbench_scores(only, 2, &s);
    double h = (92 * 0.5 + 47 * 1.0) / 139;
    CHECK_NEAR(s.section[1], h, 1e-15, 0);
    CHECK_NEAR(s.score, h / 4, 1e-15, 0);
    CHECK(s.complete == 0 && s.present[0] == 0);
    json_t *j = rewardbench_json(&s);
    CHECK(json_is_null(json_object_get(json_object_get(j, "sections"), "Chat")));
    CHECK_NEAR(json_real_value(json_object_get(json_object_get(j, "sections"), "Chat Hard")), h, 1e-15, 0);
    json_decref(j);
}

static void test_pair_summary_hand(void) {
    /* Four pairs given by their probabilities directly:
     *   mean_c, mean_r, P(c>r), P(tie), P(r>c)
     *   6, 4, 0.85, 0.10, 0.05   right by mean and prob; bins 8 and 0
     *   5, 5, 0.40, 0.20, 0.40   tie in mean and prob: wrong both ways; bins 4, 4
     *   3, 4, 0.30, 0.10, 0.60   wrong; bins 3 and 6
     *   7, 2, 0.95, 0.05, 0.00   right; bins 9 and 0
     * accuracy 2/4; by prob 2/4; pair ECE = 1 - mean P(c>r) = 1 - 2.5/4 = 0.375.
     * Symmetric ECE, 8 samples (conf, outcome):
     *   bin0: (0.05,0),(0.00,0) -> |0.025 - 0| * 2/8 = 0.00625
     *   bin3: (0.30,1)          -> |0.3 - 1| * 1/8  = 0.0875
     *   bin4: (0.40,1),(0.40,0) -> |0.4 - 0.5| * 2/8 = 0.025
     *   bin6: (0.60,0)          -> 0.6/8 = 0.075
     *   bin8: (0.85,1)          -> 0.15/8 = 0.01875
     *   bin9: (0.95,1)          -> 0.05/8 = 0.00625
     *   total 0.21875 */
    PairScore p[4] = {{6, 4, 0.85, 0.10, 0.05, 0}, {5, 5, 0.40, 0.20, 0.40, 1}, {3, 4, 0.30, 0.10, 0.60, 0}, {7, 2, 0.95, 0.05, 0.0, 1}};
    PairSummary s;
    OprmError err = {{0}};
    CHECK(pair_summary(p, NULL, 4, &s, &err) == 0);
    CHECK(s.n == 4 && s.truncated == 2);
    CHECK_NEAR(s.accuracy, 0.5, 1e-15, 0);
    CHECK_NEAR(s.accuracy_by_prob, 0.5, 1e-15, 0);
    CHECK_NEAR(s.ece, 0.375, 1e-12, 0);
    CHECK_NEAR(s.ece_symmetric, 0.21875, 1e-12, 0);
    CHECK_NEAR(s.mean_p_win, 0.625, 1e-15, 0);
    CHECK_NEAR(s.mean_p_tie, 0.1125, 1e-15, 0);
    CHECK_NEAR(s.mean_margin, (2 + 0 - 1 + 5) / 4.0, 1e-15, 0);
    /* A selection: pairs 0 and 3 only. */
    size_t idx[] = {0, 3};
    CHECK(pair_summary(p, idx, 2, &s, &err) == 0);
    CHECK_NEAR(s.accuracy, 1.0, 1e-15, 0);
    CHECK(pair_summary(p, NULL, 0, &s, &err) == -1);
    /* pair_score_of from distributions: chosen 0.5@3 + 0.5@7 vs rejected at 5:
     * P(c>r) = 0.5, P(r>c) = 0.5, tie 0. */
    ScoreResult c = two_levels(3, 0.5, 7), r = delta(5);
    PairScore ps = pair_score_of(&c, &r);
    CHECK_NEAR(ps.p_win, 0.5, 1e-15, 0);
    CHECK_NEAR(ps.p_loss, 0.5, 1e-15, 0);
    CHECK_NEAR(ps.p_tie, 0.0, 1e-15, 0);
}

static void test_bon_hand(void) {
    /* Candidates: A = 0.5@5 + 0.5@9 (mean 7, std 2), B = 8 for sure (mean 8, std 0),
     * C = 1 for sure.
     * P(A best) = P(A=9) = 0.5; P(B best) = P(A=5) = 0.5 (B=8 > 5); C never;
     * no tie at the top. lambda 0 picks B (mean 8); lambda 0.6: A 7-1.2 = 5.8 < 8, B. */
    ScoreResult c[3] = {two_levels(5, 0.5, 9), delta(8), delta(1)};
    BonResult b;
    OprmError err = {{0}};
    CHECK(bon_evaluate(c, 3, 0.0, &b, &err) == 0);
    CHECK(b.chosen == 1);
    CHECK_NEAR(b.p_best[0], 0.5, 1e-15, 0);
    CHECK_NEAR(b.p_best[1], 0.5, 1e-15, 0);
    CHECK_NEAR(b.p_best[2], 0.0, 1e-15, 0);
    CHECK_NEAR(b.p_tie_top, 0.0, 1e-15, 0);
    CHECK(b.most_likely_best == 0); /* tie in P(best): lowest index */
    bon_result_free(&b);
    /* A = 0.5@8 + 0.5@9 (mean 8.5, std 0.5) vs B = 8: P(A best) = 0.5, P(tie at 8) = 0.5.
     * lambda 0 -> A; lambda 2 -> A: 8.5 - 1 = 7.5 < 8 -> B. */
    ScoreResult d[2] = {two_levels(8, 0.5, 9), delta(8)};
    CHECK(bon_evaluate(d, 2, 0.0, &b, &err) == 0);
    CHECK(b.chosen == 0);
    CHECK_NEAR(b.p_best[0], 0.5, 1e-15, 0);
    CHECK_NEAR(b.p_best[1], 0.0, 1e-15, 0);
    CHECK_NEAR(b.p_tie_top, 0.5, 1e-15, 0);
    bon_result_free(&b);
    CHECK(bon_evaluate(d, 2, 2.0, &b, &err) == 0);
    CHECK(b.chosen == 1);
    CHECK_NEAR(b.utility, 8.0, 1e-15, 0);
    bon_result_free(&b);
    CHECK(bon_evaluate(d, 2, -1.0, &b, &err) == -1);
    /* "best beats every other": strict, ties wrong. */
    ScoreResult e[3] = {delta(7), delta(6), delta(7)};
    CHECK(bon_best_beats_all(e, 2) == 1);
    CHECK(bon_best_beats_all(e, 3) == 0);
}

static void test_labels(void) {
    LabelTable t = {0};
    ScoreResult good_hit = two_levels(8, 0.75, 2), good_miss = delta(3), bad = delta(2);
    label_table_add(&t, label_quality(LABEL_GOOD), &good_hit);
    label_table_add(&t, label_quality(LABEL_GOOD), &good_miss);
    label_table_add(&t, label_quality(LABEL_BAD), &bad);
    label_table_add(&t, (QualityLabel){0}, &bad); /* unlabelled: ignored */
    CHECK(t.n == 2);
    CHECK(!strcmp(t.v[0].name, "good") && t.v[0].n == 2 && t.v[0].mode_in_region == 1);
    /* P(region 7..9): 0.75 and 0 -> mean 0.375; means 0.75*8+0.25*2 = 6.5 and 3. */
    CHECK_NEAR(t.v[0].sum_p_region / 2, 0.375, 1e-15, 0);
    CHECK_NEAR(t.v[0].sum_mean / 2, 4.75, 1e-15, 0);
    json_t *j = label_table_json(&t);
    CHECK_NEAR(json_real_value(json_object_get(json_object_get(j, "bad"), "mode_in_region")), 1.0, 1e-15, 0);
    json_decref(j);
    label_table_free(&t);
}

static size_t count(const char *hay, const char *needle) {
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++) n++;
    return n;
}

static void test_report_html(void) {
    PairScore p[3] = {{6, 4, 0.85, 0.10, 0.05, 0}, {3, 4, 0.30, 0.10, 0.60, 0}, {7, 2, 0.95, 0.05, 0.0, 1}};
    PairSummary s;
    OprmError err = {{0}};
    CHECK(pair_summary(p, NULL, 3, &s, &err) == 0);
    const char *subsets[] = {"a<b>&\"c\"", "plain"};
    double acc[] = {0.5, 1.0};
    size_t n[] = {2, 1};
    LabelTable t = {0};
    ScoreResult r = delta(8);
    label_table_add(&t, label_quality(LABEL_GOOD), &r);
    const char *files[] = {"x.jsonl"};
    ReportInput in = {.model = "m<1>", .files = files, .n_files = 1, .pairs = p, .n_pairs = 3, .overall = &s,
                      .subsets = subsets, .subset_accuracy = acc, .subset_n = n, .n_subsets = 2, .labels = &t,
                      .summary_json = "{\"k\": \"<v>\"}"};
    StrBuf o = {0};
    report_html_render(&in, &o);
    CHECK(!strncmp(o.s, "<!DOCTYPE html>", 15));
    CHECK_STR_CONTAINS(o.s, "</html>");
    /* reliability, chosen/rejected histogram, per-label histogram, subset bars */
    CHECK(count(o.s, "<svg") == 4);
    CHECK(count(o.s, "</svg>") == 4);
    CHECK(count(o.s, "<script") == 0 && count(o.s, "http://") == count(o.s, "xmlns=\"http://www.w3.org/2000/svg\""));
    CHECK_STR_CONTAINS(o.s, "a&lt;b&gt;&amp;&quot;c&quot;");
    CHECK_STR_CONTAINS(o.s, "m&lt;1&gt;");
    CHECK(count(o.s, "<v>") == 0);
    sb_free(&o);
    label_table_free(&t);
    StrBuf e = {0};
    xml_escape(&e, "<&>\"'");
    CHECK(!strcmp(e.s, "&lt;&amp;&gt;&quot;'"));
    sb_free(&e);
}

int main(void) {
    RUN(test_auroc_hand);
    RUN(test_audit_rank);
    RUN(test_rewardbench_hand);
    RUN(test_pair_summary_hand);
    RUN(test_bon_hand);
    RUN(test_labels);
    RUN(test_report_html);
    return test_summary();
}
