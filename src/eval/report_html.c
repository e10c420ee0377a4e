#include "eval/report_html.h"

#include <stdlib.h>
#include <string.h>

#include "eval/svg.h"
#include "io/fileio.h"
#include "ordinal/metrics.h"

static void row(StrBuf *o, const char *name, const char *fmt, double v) {
    sb_puts(o, "<tr><th>");
    xml_escape(o, name);
    sb_puts(o, "</th><td>");
    sb_printf(o, fmt, v);
    sb_puts(o, "</td></tr>\n");
}

/* Quality labels in order: bad < normal < good; ratings by level after them. */
static int label_rank(const LabelStats *l) {
    if (!strcmp(l->name, "bad")) return 0;
    if (!strcmp(l->name, "normal")) return 1;
    if (!strcmp(l->name, "good")) return 2;
    return 3 + l->lo;
}

static const char *label_color(const LabelStats *l) {
    if (!strcmp(l->name, "bad")) return "#e15759";
    if (!strcmp(l->name, "normal")) return "#f28e2b";
    if (!strcmp(l->name, "good")) return "#59a14f";
    return NULL;
}

static void pair_plots(StrBuf *o, const ReportInput *in) {
    size_t n = in->n_pairs;
    /* Both orientations of every pair: (P(c>r), correct) and (P(r>c), wrong),
     * the samples of metric_pair_ece_symmetric. */
    double *conf = xmalloc(2 * n * sizeof *conf), *out = xmalloc(2 * n * sizeof *out);
    double *mc = xmalloc(n * sizeof *mc), *mr = xmalloc(n * sizeof *mr);
    for (size_t i = 0; i < n; i++) {
        conf[2 * i] = in->pairs[i].p_win;
        out[2 * i] = 1;
        conf[2 * i + 1] = in->pairs[i].p_loss;
        out[2 * i + 1] = 0;
        mc[i] = in->pairs[i].mean_c;
        mr[i] = in->pairs[i].mean_r;
    }
    sb_puts(o, "<h2>Calibration</h2>\n<p>Each pair in both orders: the predicted probability that the first response "
               "is better against whether it is. Bars: fraction correct per bin; dots: mean confidence; dashed: "
               "perfect calibration.</p>\n<div class=\"plot\">");
    svg_reliability(o, "Reliability diagram of P(A > B)", conf, out, 2 * n, OPRM_ECE_BINS);
    sb_puts(o, "</div>\n<h2>Scores</h2>\n<div class=\"plot\">");
    SvgSeries s[2] = {{"chosen", mc, n, "#59a14f"}, {"rejected", mr, n, "#e15759"}};
    svg_histogram(o, "Mean score: chosen vs rejected", s, 2, 1, 9, 32, "mean score (1..9)");
    sb_puts(o, "</div>\n");
    free(conf);
    free(out);
    free(mc);
    free(mr);
}

void report_html_render(const ReportInput *in, StrBuf *o) {
    sb_puts(o, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>oprm eval: ");
    xml_escape(o, in->model);
    sb_puts(o, "</title>\n<style>\nbody{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}\n"
               "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
               "text-align:left}\nth{background:#f4f4f4}.plot{margin:1em 0;overflow-x:auto}\n"
               "pre{background:#f8f8f8;padding:1em;overflow-x:auto;font-size:12px}\n</style>\n</head>\n<body>\n");
    sb_puts(o, "<h1>oprm eval: ");
    xml_escape(o, in->model);
    sb_puts(o, "</h1>\n<p>Data: ");
    for (size_t i = 0; i < in->n_files; i++) {
        if (i) sb_puts(o, ", ");
        sb_puts(o, "<code>");
        xml_escape(o, in->files[i]);
        sb_puts(o, "</code>");
    }
    sb_puts(o, "</p>\n");
    if (in->overall) {
        const PairSummary *s = in->overall;
        sb_puts(o, "<h2>Pairs</h2>\n<table>\n");
        row(o, "pairs", "%.0f", (double)s->n);
        row(o, "accuracy (mean_c > mean_r)", "%.4f", s->accuracy);
        row(o, "accuracy (P(c>r) > P(r>c))", "%.4f", s->accuracy_by_prob);
        row(o, "mean P(c>r)", "%.4f", s->mean_p_win);
        row(o, "mean P(tie)", "%.4f", s->mean_p_tie);
        row(o, "ECE (pair: (P(c>r), 1) per pair)", "%.4f", s->ece);
        row(o, "ECE (symmetric: both orders)", "%.4f", s->ece_symmetric);
        row(o, "pairs with a truncated side", "%.0f", (double)s->truncated);
        sb_puts(o, "</table>\n");
        pair_plots(o, in);
    }
    if (in->labels && in->labels->n) {
        sb_puts(o, "<h2>Labelled responses</h2>\n<table>\n<tr><th>label</th><th>n</th><th>mean score</th>"
                   "<th>mean P(region)</th><th>mode in region</th></tr>\n");
        SvgSeries *s = xmalloc(in->labels->n * sizeof *s);
        /* Lowest label first (bad, normal, good, ratings by level). */
        size_t *order = xmalloc(in->labels->n * sizeof *order);
        for (size_t i = 0; i < in->labels->n; i++) order[i] = i;
        for (size_t i = 1; i < in->labels->n; i++)
            for (size_t j = i; j > 0 && label_rank(&in->labels->v[order[j]]) < label_rank(&in->labels->v[order[j - 1]]); j--) {
                size_t t = order[j];
                order[j] = order[j - 1];
                order[j - 1] = t;
            }
        for (size_t i = 0; i < in->labels->n; i++) {
            const LabelStats *l = &in->labels->v[order[i]];
            double n = (double)l->n;
            sb_printf(o, "<tr><td>%s</td><td>%zu</td><td>%.3f</td><td>%.3f</td><td>%.3f</td></tr>\n", l->name, l->n,
                      l->sum_mean / n, l->sum_p_region / n, (double)l->mode_in_region / n);
            s[i] = (SvgSeries){l->name, l->means, l->n, label_color(l)};
        }
        sb_puts(o, "</table>\n<div class=\"plot\">");
        svg_histogram(o, "Mean score per label", s, in->labels->n, 1, 9, 32, "mean score (1..9)");
        sb_puts(o, "</div>\n");
        free(s);
        free(order);
    }
    if (in->n_subsets) {
        sb_puts(o, "<h2>Accuracy per subset</h2>\n<div class=\"plot\">");
        svg_bars(o, "Pair accuracy per subset (dashed: overall)", in->subsets, in->subset_accuracy, in->subset_n,
                 in->n_subsets, "accuracy", in->overall ? in->overall->accuracy : -1);
        sb_puts(o, "</div>\n<table>\n<tr><th>subset</th><th>n</th><th>accuracy</th></tr>\n");
        for (size_t i = 0; i < in->n_subsets; i++) {
            sb_puts(o, "<tr><td>");
            xml_escape(o, in->subsets[i]);
            sb_printf(o, "</td><td>%zu</td><td>%.4f</td></tr>\n", in->subset_n[i], in->subset_accuracy[i]);
        }
        sb_puts(o, "</table>\n");
    }
    if (in->summary_json) {
        sb_puts(o, "<h2>Summary (JSON)</h2>\n<pre>");
        xml_escape(o, in->summary_json);
        sb_puts(o, "</pre>\n");
    }
    sb_puts(o, "</body>\n</html>\n");
}

int report_html_write(const char *path, const ReportInput *in, OprmError *err) {
    StrBuf o = {0};
    report_html_render(in, &o);
    int rc = write_file_atomic(path, o.s, o.n, err);
    sb_free(&o);
    return rc;
}
