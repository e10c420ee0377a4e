/* Minimal inline-SVG plots for the HTML report: each call appends one
 * complete <svg> element (no scripts, no external resources). */
#ifndef OPRM_EVAL_SVG_H
#define OPRM_EVAL_SVG_H

#include <stddef.h>

#include "util/vec.h"

/* Appends s with &, <, >, " escaped. */
void xml_escape(StrBuf *o, const char *s);

/* Vertical bars of values in [0,1] (e.g. accuracy per subset), labelled below,
 * with n per bar in the tooltip and a dashed line at `ref` (< 0: none). More
 * than 20 bars wrap into rows (evenly filled), so the svg stays under 1,000 px
 * wide; labels over 28 characters are cut with "..." (the tooltip keeps them). */
void svg_bars(StrBuf *o, const char *title, const char *const *labels, const double *values, const size_t *counts,
              size_t n, const char *ylabel, double ref);

typedef struct {
    const char *name;
    const double *values;
    size_t n;
    const char *color; /* "#rrggbb", or NULL for the default palette */
} SvgSeries;

/* Overlaid histograms over [lo, hi] in `bins` bins, each series normalised to
 * fractions so groups of different sizes compare. */
void svg_histogram(StrBuf *o, const char *title, const SvgSeries *series, size_t n_series, double lo, double hi,
                   int bins, const char *xlabel);

/* Reliability diagram: samples (confidence, outcome in [0,1]) in equal-width
 * bins; bars at each bin's mean outcome, dots at its mean confidence, the
 * diagonal for perfect calibration. */
void svg_reliability(StrBuf *o, const char *title, const double *conf, const double *outcome, size_t n, int bins);

#endif
