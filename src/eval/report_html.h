/* The self-contained HTML page of `oprm eval --report`: summary tables and
 * inline SVG plots (reliability diagram, score histograms chosen vs rejected
 * and per label, accuracy per subset). No scripts, no network. */
#ifndef OPRM_EVAL_REPORT_HTML_H
#define OPRM_EVAL_REPORT_HTML_H

#include "eval/eval_pairs.h"
#include "util/vec.h"

typedef struct {
    const char *model;             /* shown in the title */
    const char *const *files;      /* data files */
    size_t n_files;
    const PairScore *pairs;        /* every pair of every file */
    size_t n_pairs;
    const PairSummary *overall;    /* NULL when there are no pairs */
    const char *const *subsets;    /* accuracy per subset */
    const double *subset_accuracy;
    const size_t *subset_n;
    size_t n_subsets;
    const LabelTable *labels;      /* may be NULL */
    const char *summary_json;      /* the stdout summary, shown verbatim */
} ReportInput;

void report_html_render(const ReportInput *in, StrBuf *out);
int report_html_write(const char *path, const ReportInput *in, OprmError *err);

#endif
