#include "eval/svg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

static const char *const COLORS[] = {"#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#76b7b2", "#b07aa1", "#edc948"};
#define N_COLORS (sizeof COLORS / sizeof *COLORS)

/* Plot area inside each svg. */
enum { W = 640, H = 300, LEFT = 50, RIGHT = 20, TOP = 30, BOTTOM = 40 };

void xml_escape(StrBuf *o, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&': sb_puts(o, "&amp;"); break;
        case '<': sb_puts(o, "&lt;"); break;
        case '>': sb_puts(o, "&gt;"); break;
        case '"': sb_puts(o, "&quot;"); break;
        default: sb_append(o, s, 1);
        }
    }
}

static void open_svg(StrBuf *o, int width, int height, const char *title) {
    sb_printf(o, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                 "font-family=\"sans-serif\" font-size=\"11\">\n<title>", width, height, width, height);
    xml_escape(o, title);
    sb_printf(o, "</title>\n<text x=\"%d\" y=\"18\" font-size=\"14\" font-weight=\"bold\">", LEFT);
    xml_escape(o, title);
    sb_puts(o, "</text>\n");
}

/* Y axis from 0 to ymax with 5 ticks, and the x axis line. */
static void axes(StrBuf *o, int width, int height, double ymax, const char *ylabel, int percent) {
    int x0 = LEFT, y0 = height - BOTTOM, x1 = width - RIGHT;
    for (int t = 0; t <= 5; t++) {
        double v = ymax * t / 5;
        double y = y0 - (double)(y0 - TOP) * t / 5;
        sb_printf(o, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>", x0, y, x1, y);
        if (percent) sb_printf(o, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.0f%%</text>\n", x0 - 4, y + 4, 100 * v);
        else sb_printf(o, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.2g</text>\n", x0 - 4, y + 4, v);
    }
    sb_printf(o, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n", x0, y0, x1, y0);
    sb_printf(o, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n", x0, y0, x0, TOP);
    sb_printf(o, "<text x=\"12\" y=\"%d\" transform=\"rotate(-90 12 %d)\" text-anchor=\"middle\">", (TOP + y0) / 2,
              (TOP + y0) / 2);
    xml_escape(o, ylabel);
    sb_puts(o, "</text>\n");
}

/* Characters of a UTF-8 string (code points), for label extents. */
static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; s && *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Appends at most max characters of s, escaped, with "..." when cut (the full
 * name stays in the bar's tooltip and in the report's table). */
static void label_text(StrBuf *o, const char *s, size_t max) {
    size_t chars = 0;
    const char *p = s;
    for (; p && *p; p++) {
        if (((unsigned char)*p & 0xC0) != 0x80 && chars++ == max) break;
    }
    char *cut = xmalloc((size_t)(p - s) + 1);
    memcpy(cut, s, (size_t)(p - s));
    cut[p - s] = 0;
    xml_escape(o, cut);
    if (p && *p) sb_puts(o, "...");
    free(cut);
}

/* The page's content is 1100 px wide: wider bar charts wrap into rows of at
 * most BARS_PER_ROW bars (evenly filled) instead of running off the page. */
enum { BARS_PER_ROW = 20, BAR_SLOT = 40, LABEL_MAX_CHARS = 28 };
#define LABEL_PX 6.5 /* average advance of an 11 px sans-serif character, with margin */

void svg_bars(StrBuf *o, const char *title, const char *const *labels, const double *values, const size_t *counts,
              size_t n, const char *ylabel, double ref) {
    size_t rows = n > BARS_PER_ROW ? (n + BARS_PER_ROW - 1) / BARS_PER_ROW : 1;
    size_t per_row = rows > 1 ? (n + rows - 1) / rows : n;
    /* Labels are written rotated 45 degrees under the bars: their extent, down
     * and to the right of the bar's centre, sets the room below each row and
     * right of the plot. */
    size_t longest = 0;
    for (size_t i = 0; i < n; i++) {
        size_t c = utf8_chars(labels[i]);
        if (c > LABEL_MAX_CHARS) c = LABEL_MAX_CHARS + 3;
        if (c > longest) longest = c;
    }
    int extent = (int)ceil(longest * LABEL_PX * 0.7072) + 16;
    int label_room = extent > BAR_SLOT / 2 + RIGHT ? extent - BAR_SLOT / 2 : RIGHT;
    int plot_h = H - TOP - BOTTOM, row_h = plot_h + extent + 10;
    int width = LEFT + (int)(per_row < 8 ? 8 : per_row) * BAR_SLOT + label_room;
    if (width < W) width = W;
    int height = TOP + (int)rows * row_h;
    open_svg(o, width, height, title);
    int x0 = LEFT, x1 = width - label_room;
    double slot = (double)(x1 - x0) / (double)(per_row ? per_row : 1);
    for (size_t r = 0; r < rows; r++) {
        int y0 = TOP + (int)r * row_h + plot_h;
        for (int t = 0; t <= 5; t++) {
            double y = y0 - plot_h * t / 5.0;
            sb_printf(o, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"%d\" "
                         "y=\"%.1f\" text-anchor=\"end\">%d%%</text>\n", x0, y, x1, y, x0 - 4, y + 4, 20 * t);
        }
        sb_printf(o, "<text x=\"12\" y=\"%d\" transform=\"rotate(-90 12 %d)\" text-anchor=\"middle\">",
                  y0 - plot_h / 2, y0 - plot_h / 2);
        xml_escape(o, ylabel);
        sb_puts(o, "</text>\n");
        for (size_t i = r * per_row; i < n && i < (r + 1) * per_row; i++) {
            double v = values[i] < 0 ? 0 : values[i] > 1 ? 1 : values[i];
            double bx = x0 + slot * (double)(i - r * per_row) + slot * 0.15, bw = slot * 0.7, bh = v * plot_h;
            sb_printf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>", bx,
                      y0 - bh, bw, bh, COLORS[0]);
            xml_escape(o, labels[i]);
            sb_printf(o, ": %.1f%% of %zu</title></rect>\n", 100 * values[i], counts ? counts[i] : (size_t)0);
            double tx = bx + bw / 2;
            sb_printf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"9\">%.0f%%</text>\n",
                      tx, y0 - bh - 3, 100 * values[i]);
            sb_printf(o, "<text class=\"bar-label\" x=\"%.1f\" y=\"%d\" transform=\"rotate(45 %.1f %d)\">", tx,
                      y0 + 12, tx, y0 + 12);
            label_text(o, labels[i], LABEL_MAX_CHARS);
            sb_puts(o, "</text>\n");
        }
        if (ref >= 0 && ref <= 1) {
            double y = y0 - ref * plot_h;
            sb_printf(o, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e15759\" "
                         "stroke-dasharray=\"5,4\"/>\n", x0, y, x1, y);
        }
        sb_printf(o, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n", x0, y0, x1, y0);
    }
    sb_puts(o, "</svg>\n");
}

void svg_histogram(StrBuf *o, const char *title, const SvgSeries *series, size_t n_series, double lo, double hi,
                   int bins, const char *xlabel) {
    double *frac = xcalloc((size_t)bins * (n_series ? n_series : 1), sizeof *frac);
    double ymax = 0;
    for (size_t s = 0; s < n_series; s++) {
        for (size_t i = 0; i < series[s].n; i++) {
            int b = (int)floor((series[s].values[i] - lo) / (hi - lo) * bins);
            if (b < 0) b = 0;
            if (b >= bins) b = bins - 1;
            frac[s * (size_t)bins + (size_t)b] += 1.0 / (double)series[s].n;
        }
        for (int b = 0; b < bins; b++)
            if (frac[s * (size_t)bins + (size_t)b] > ymax) ymax = frac[s * (size_t)bins + (size_t)b];
    }
    ymax = ymax > 0 ? ceil(ymax * 10) / 10 : 1;
    open_svg(o, W, H, title);
    axes(o, W, H, ymax, "fraction", 0);
    int x0 = LEFT, y0 = H - BOTTOM, x1 = W - RIGHT;
    double bw = (double)(x1 - x0) / bins;
    for (size_t s = 0; s < n_series; s++) {
        const char *c = series[s].color ? series[s].color : COLORS[s % N_COLORS];
        for (int b = 0; b < bins; b++) {
            double f = frac[s * (size_t)bins + (size_t)b];
            double h = f / ymax * (y0 - TOP);
            sb_printf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" fill-opacity=\"0.45\" "
                         "stroke=\"%s\"><title>", x0 + bw * b, y0 - h, bw, h, c, c);
            xml_escape(o, series[s].name);
            sb_printf(o, " [%.2f, %.2f): %.1f%%</title></rect>\n", lo + (hi - lo) * b / bins,
                      lo + (hi - lo) * (b + 1) / bins, 100 * f);
        }
        sb_printf(o, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">", x1 - 150,
                  TOP + 4 + 16 * (int)s, c, x1 - 136, TOP + 13 + 16 * (int)s);
        xml_escape(o, series[s].name);
        sb_printf(o, " (n=%zu)</text>\n", series[s].n);
    }
    for (int t = 0; t <= 8; t++) {
        double v = lo + (hi - lo) * t / 8;
        sb_printf(o, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.1f</text>\n", x0 + (x1 - x0) * t / 8.0, y0 + 14, v);
    }
    sb_printf(o, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", (x0 + x1) / 2, H - 6);
    xml_escape(o, xlabel);
    sb_puts(o, "</text>\n</svg>\n");
    free(frac);
}

void svg_reliability(StrBuf *o, const char *title, const double *conf, const double *outcome, size_t n, int bins) {
    double *sum_c = xcalloc((size_t)bins, sizeof *sum_c), *sum_o = xcalloc((size_t)bins, sizeof *sum_o);
    size_t *cnt = xcalloc((size_t)bins, sizeof *cnt);
    for (size_t i = 0; i < n; i++) {
        int b = (int)floor(conf[i] * bins); /* the bins of metric_ece: the last also holds 1.0 */
        if (b < 0) b = 0;
        if (b >= bins) b = bins - 1;
        sum_c[b] += conf[i];
        sum_o[b] += outcome[i];
        cnt[b]++;
    }
    int size = 360;
    open_svg(o, size + LEFT, size, title);
    int x0 = LEFT, y0 = size - BOTTOM, x1 = size + LEFT - RIGHT;
    int pw = x1 - x0, ph = y0 - TOP;
    axes(o, size + LEFT, size, 1.0, "fraction correct", 1);
    double bw = (double)pw / bins;
    for (int b = 0; b < bins; b++) {
        if (!cnt[b]) continue;
        double acc = sum_o[b] / (double)cnt[b], mc = sum_c[b] / (double)cnt[b];
        sb_printf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" fill-opacity=\"0.7\">"
                     "<title>[%.1f, %.1f): n=%zu, correct %.1f%%, mean confidence %.3f</title></rect>\n",
                  x0 + bw * b + 1, y0 - acc * ph, bw - 2, acc * ph, COLORS[0], (double)b / bins, (double)(b + 1) / bins,
                  cnt[b], 100 * acc, mc);
        sb_printf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", x0 + mc * pw, y0 - mc * ph, COLORS[1]);
    }
    sb_printf(o, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#999\" stroke-dasharray=\"4,4\"/>\n", x0, y0, x1,
              TOP);
    for (int t = 0; t <= 5; t++)
        sb_printf(o, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.1f</text>\n", x0 + pw * t / 5.0, y0 + 14, t / 5.0);
    sb_printf(o, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">confidence</text>\n</svg>\n", (x0 + x1) / 2, size - 6);
    free(sum_c);
    free(sum_o);
    free(cnt);
}
