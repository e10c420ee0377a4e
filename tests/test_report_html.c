/* The per-subset chart of report.html with 36 subsets (RewardBench has 23,
 * a mix of files more): it used to be one 1,600 px row inside the page's
 * 1,100 px content, so the right third was cut off. Checked twice: on the
 * markup (every svg at most 1,100 px wide, every bar and label present), and
 * in a real browser: headless Chromium lays the page out and a script
 * measures the bounding box of every bar and label of the chart against the
 * chart's box and its container's (nothing outside, nothing scrolled away). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "eval/report_html.h"
#include "io/fileio.h"
#include "test.h"
#include "util/vec.h"

#define N_SUB 36

static char dir[] = "/tmp/oprm-test-report-XXXXXX";
static char names[N_SUB][64];
static const char *subsets[N_SUB];
static double acc[N_SUB];
static size_t counts[N_SUB];

static size_t count(const char *hay, const char *needle) {
    size_t n = 0;
    for (const char *p = hay; p && (p = strstr(p, needle)); p++) n++;
    return n;
}

/* Names as long as real ones ("rewardbench/alpacaeval-length"), one far longer. */
static void render(StrBuf *o) {
    for (int i = 0; i < N_SUB; i++) {
        snprintf(names[i], sizeof names[i], i == 7 ? "file%02d/an-extremely-long-subset-name-over-forty-chars"
                                                   : "file%02d/alpacaeval-length", i);
        subsets[i] = names[i];
        acc[i] = 0.3 + 0.6 * (i % 7) / 6.0;
        counts[i] = 10 + (size_t)i;
    }
    const char *files[] = {"mix.jsonl"};
    ReportInput in = {.model = "m", .files = files, .n_files = 1, .subsets = subsets, .subset_accuracy = acc,
                      .subset_n = counts, .n_subsets = N_SUB, .summary_json = "{}"};
    report_html_render(&in, o);
}

static void test_chart_markup(void) {
    StrBuf o = {0};
    render(&o);
    CHECK_STR_CONTAINS(o.s, "max-width:1100px"); /* the page's content width this chart must fit */
    int svgs = 0, too_wide = 0;
    for (const char *p = o.s; (p = strstr(p, "<svg ")); p++) {
        const char *w = strstr(p, " width=\"");
        int width = w ? atoi(w + 8) : 0;
        svgs++;
        if (width <= 0 || width > 1100) {
            too_wide++;
            fprintf(stderr, "svg %d is %d px wide\n", svgs, width);
        }
    }
    CHECK(svgs >= 1);
    CHECK(too_wide == 0);
    CHECK(count(o.s, "class=\"bar-label\"") == N_SUB);
    CHECK(count(o.s, "<rect ") == N_SUB);
    /* The long name is cut on the chart; its tooltip and the table keep it whole. */
    CHECK_STR_CONTAINS(o.s, ">file07/an-extremely-long-sub...</text>");
    CHECK(count(o.s, "file07/an-extremely-long-subset-name-over-forty-chars") == 2);
    sb_free(&o);
}

/* Finds a Chromium binary: OPRM_CHROMIUM, else chromium / chromium-browser in PATH. */
static int find_chromium(char *out, size_t size) {
    const char *env = getenv("OPRM_CHROMIUM");
    if (env && *env) {
        snprintf(out, size, "%s", env);
        return access(out, X_OK) == 0;
    }
    const char *path = getenv("PATH");
    const char *names_[] = {"chromium", "chromium-browser"};
    for (int k = 0; k < 2; k++) {
        for (const char *p = path ? path : "/usr/bin"; *p;) {
            const char *e = strchr(p, ':');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            snprintf(out, size, "%.*s/%s", (int)len, p, names_[k]);
            if (len && access(out, X_OK) == 0) return 1;
            p += len + (e ? 1 : 0);
            if (!e) break;
        }
    }
    return 0;
}

/* Appended to a copy of the page (the report itself has no scripts): measures
 * the subset chart in the laid-out page and writes the numbers into the DOM,
 * which --dump-dom prints. */
static const char *MEASURE_JS =
    "<script>(function(){var chart=null;document.querySelectorAll('svg').forEach(function(s){"
    "var t=s.querySelector('title');if(t&&t.textContent.indexOf('per subset')>=0)chart=s;});"
    "var o={found:!!chart};if(chart){var pr=chart.parentElement.getBoundingClientRect(),"
    "sr=chart.getBoundingClientRect(),L=Math.max(pr.left,sr.left)-0.5,R=Math.min(pr.right,sr.right)+0.5;"
    "o.svg_w=sr.width;o.plot_w=pr.width;o.scroll_w=chart.parentElement.scrollWidth;"
    "o.client_w=chart.parentElement.clientWidth;o.bars=0;o.bars_in=0;o.texts=0;o.texts_in=0;"
    "chart.querySelectorAll('rect').forEach(function(r){var b=r.getBoundingClientRect();o.bars++;"
    "if(b.width>0&&b.left>=L&&b.right<=R&&b.top>=sr.top-0.5&&b.bottom<=sr.bottom+0.5)o.bars_in++;});"
    "chart.querySelectorAll('text').forEach(function(t){var b=t.getBoundingClientRect();o.texts++;"
    "if(b.width>0&&b.left>=L&&b.right<=R&&b.top>=sr.top-0.5&&b.bottom<=sr.bottom+0.5)o.texts_in++;"
    "else if(!o.first_out)o.first_out=t.textContent;});}"
    "var p=document.createElement('pre');p.textContent='MEASURE '+JSON.stringify(o)+' END';"
    "document.body.appendChild(p);})();</script>";

static void test_chart_in_chromium(void) {
    char chromium[512];
    if (!find_chromium(chromium, sizeof chromium)) {
        SKIP("no chromium in PATH (Debian package chromium, in .ci/packages; OPRM_CHROMIUM overrides)");
        return;
    }
    StrBuf page = {0};
    render(&page);
    char *end = strstr(page.s, "</body>");
    CHECK(end != NULL);
    if (!end) {
        sb_free(&page);
        return;
    }
    StrBuf html = {0};
    sb_append(&html, page.s, (size_t)(end - page.s));
    sb_puts(&html, MEASURE_JS);
    sb_puts(&html, end);
    char *path = path_join(dir, "report.html"), *profile = path_join(dir, "profile"), *dump = path_join(dir, "dom.txt");
    OprmError err = {{0}};
    CHECK(write_file_atomic(path, html.s, html.n, &err) == 0);
    /* A 1,280 px window: the page centres its 1,100 px content. Bounded: a hung
     * browser is killed after 60 s. */
    StrBuf cmd = {0};
    sb_printf(&cmd,
              "timeout -k 5 60 '%s' --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run "
              "--no-default-browser-check --hide-scrollbars --window-size=1280,1600 --user-data-dir='%s' "
              "--dump-dom 'file://%s' > '%s' 2>'%s/chromium.err'",
              chromium, profile, path, dump, dir);
    int rc = system(cmd.s);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
    size_t n = 0;
    char *dom = read_file(dump, &n, &err);
    const char *m = dom ? strstr(dom, "<pre>MEASURE ") : NULL; /* the result, not the script's text */
    const char *e = m ? strstr(m, " END") : NULL;
    CHECK(m && e);
    json_t *j = NULL;
    if (m && e) {
        json_error_t je;
        j = json_loadb(m + 13, (size_t)(e - m - 13), 0, &je);
    }
    CHECK(j != NULL);
    if (j) {
        char *txt = json_dumps(j, JSON_COMPACT);
        fprintf(stderr, "chromium measured: %s\n", txt);
        free(txt);
        CHECK(json_is_true(json_object_get(j, "found")));
        double svg_w = json_number_value(json_object_get(j, "svg_w"));
        double plot_w = json_number_value(json_object_get(j, "plot_w"));
        CHECK(svg_w > 600 && svg_w <= plot_w + 0.5); /* fits its container */
        CHECK(json_integer_value(json_object_get(j, "scroll_w")) <= json_integer_value(json_object_get(j, "client_w")));
        CHECK(json_integer_value(json_object_get(j, "bars")) == N_SUB);
        CHECK(json_integer_value(json_object_get(j, "bars_in")) == N_SUB);
        json_int_t texts = json_integer_value(json_object_get(j, "texts"));
        CHECK(texts >= 2 * N_SUB); /* a label and a value per bar, plus axes */
        CHECK(json_integer_value(json_object_get(j, "texts_in")) == texts);
        json_decref(j);
    }
    free(dom);
    if (!j && dom) fprintf(stderr, "dom tail: %s\n", dom + (n > 600 ? n - 600 : 0));
    unlink(dump);
    unlink(path);
    char *errp = path_join(dir, "chromium.err");
    unlink(errp);
    free(errp);
    char rm[600];
    snprintf(rm, sizeof rm, "rm -rf '%s'", profile);
    CHECK(system(rm) == 0);
    free(path);
    free(profile);
    free(dump);
    sb_free(&cmd);
    sb_free(&html);
    sb_free(&page);
}

int main(void) {
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_chart_markup);
    RUN(test_chart_in_chromium);
    rmdir(dir);
    return test_summary();
}
