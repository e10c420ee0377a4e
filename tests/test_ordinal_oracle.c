/* OPRM losses and gradients vs PyTorch autograd in float64 (oracle vectors from
 * tools/gen_ordinal_oracle.py, which evaluates the spec's naive product formulas). */
#include <jansson.h>

#include "ordinal/ordinal.h"
#include "ordinal/rgft.h"
#include "test.h"

#define K OPRM_LEVELS

static int read_vec(json_t *obj, const char *key, double out[K]) {
    json_t *a = json_object_get(obj, key);
    if (!json_is_array(a) || json_array_size(a) != K) return -1;
    for (int k = 0; k < K; k++) out[k] = json_number_value(json_array_get(a, (size_t)k));
    return 0;
}

static void test_against_torch(void) {
    json_error_t jerr;
    json_t *root = json_load_file("tests/fixtures/ordinal_oracle.json", 0, &jerr);
    CHECK(root != NULL);
    if (!root) {
        fprintf(stderr, "ordinal_oracle.json: %s (line %d)\n", jerr.text, jerr.line);
        return;
    }
    json_t *cases = json_object_get(root, "cases");
    CHECK(json_is_array(cases) && json_array_size(cases) >= 10);
    size_t i;
    json_t *c;
    int n_plain = 0;
    json_array_foreach(cases, i, c) {
        double zc[K], zr[K], wc[K], wr[K], gc_ref[K], gr_ref[K], gp_ref[K];
        CHECK(read_vec(c, "zc", zc) == 0 && read_vec(c, "zr", zr) == 0 && read_vec(c, "wc", wc) == 0 &&
              read_vec(c, "wr", wr) == 0 && read_vec(c, "grad_c", gc_ref) == 0 &&
              read_vec(c, "grad_r", gr_ref) == 0 && read_vec(c, "point_grad", gp_ref) == 0);
        double loss_ref = json_number_value(json_object_get(c, "loss"));
        double point_ref = json_number_value(json_object_get(c, "point_loss"));
        OprmError err;
        double loss, gc[K], gr[K], gp[K];
        CHECK(rgft_pair_loss(zc, wc, zr, wr, &loss, gc, gr, &err) == 0);
        int unlabelled = 1;
        for (int k = 0; k < K; k++) unlabelled &= wc[k] == 1.0 && wr[k] == 1.0;
        if (unlabelled) { /* the plain pair loss must agree too */
            double l2;
            CHECK(ordinal_pair_loss(zc, zr, &l2, NULL, NULL, &err) == 0);
            CHECK_NEAR(l2, loss_ref, 1e-13, 1e-12);
            n_plain++;
        }
        CHECK_NEAR(loss, loss_ref, 1e-13, 1e-12);
        for (int k = 0; k < K; k++) {
            CHECK_NEAR(gc[k], gc_ref[k], 1e-13, 1e-11);
            CHECK_NEAR(gr[k], gr_ref[k], 1e-13, 1e-11);
        }
        CHECK(rgft_point_loss(zc, wc, &loss, gp, &err) == 0);
        CHECK_NEAR(loss, point_ref, 1e-13, 1e-12);
        for (int k = 0; k < K; k++) CHECK_NEAR(gp[k], gp_ref[k], 1e-13, 1e-11);
    }
    CHECK(n_plain >= 2);
    json_decref(root);
}

int main(void) {
    RUN(test_against_torch);
    return test_summary();
}
