/* AdamW, gradient clipping, accumulation and LR schedules against PyTorch
 * (tests/fixtures/optim/adamw.json from tools/gen_optim_fixtures.py). */
#include <jansson.h>
#include <stdint.h>
#include <unistd.h>

#include "test.h"
#include "train/adamw.h"
#include "train/schedule.h"

static json_t *load_fixture(void) {
    json_error_t je;
    json_t *root = json_load_file("tests/fixtures/optim/adamw.json", 0, &je);
    if (!root) fprintf(stderr, "fixture: %s (line %d)\n", je.text, je.line);
    return root;
}

static void fill(float *dst, json_t *arr) {
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x) dst[i] = (float)json_number_value(x);
}

static double max_rel_err(const float *a, json_t *ref, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double r = json_number_value(json_array_get(ref, i));
        double e = fabs(a[i] - r) / (fabs(r) + 1e-12);
        if (!(e <= worst)) worst = e; /* NaN propagates as failure */
    }
    return worst;
}

static SchedKind kind_of(const char *s) {
    SchedKind k = SCHED_CONSTANT;
    OprmError err;
    CHECK(schedule_kind_parse(s, &k, &err) == 0);
    return k;
}

static void run_case(json_t *c) {
    const char *name = json_string_value(json_object_get(c, "name"));
    json_t *jp = json_object_get(c, "params");
    int np = (int)json_array_size(jp);
    ModelParam params[8];
    for (int i = 0; i < np; i++) {
        json_t *p = json_array_get(jp, i);
        size_t n = (size_t)json_integer_value(json_object_get(p, "numel"));
        params[i] = (ModelParam){.name = json_string_value(json_object_get(p, "name")),
                                 .data = calloc(n, sizeof(float)),
                                 .grad = calloc(n, sizeof(float)),
                                 .numel = n,
                                 .ndim = 1,
                                 .shape = {(int64_t)n, 0}};
        fill(params[i].data, json_object_get(p, "init"));
    }
    AdamWConfig cfg = {json_number_value(json_object_get(c, "beta1")), json_number_value(json_object_get(c, "beta2")),
                       json_number_value(json_object_get(c, "eps")),
                       json_number_value(json_object_get(c, "weight_decay"))};
    AdamW *opt = adamw_new(params, np, &cfg);
    Schedule sched = {kind_of(json_string_value(json_object_get(c, "schedule"))),
                      json_integer_value(json_object_get(c, "warmup_steps")),
                      json_integer_value(json_object_get(c, "total_steps"))};
    double base_lr = json_number_value(json_object_get(c, "lr"));
    double max_norm = json_number_value(json_object_get(c, "max_grad_norm"));
    int accum = (int)json_integer_value(json_object_get(c, "accum"));
    json_t *steps = json_object_get(c, "steps");
    double worst = 0;
    for (size_t s = 0; s < json_array_size(steps); s++) {
        json_t *st = json_array_get(steps, s);
        for (int i = 0; i < np; i++) memset(params[i].grad, 0, params[i].numel * sizeof(float));
        json_t *micro = json_object_get(st, "micro_grads");
        for (int a = 0; a < accum; a++) {
            for (int i = 0; i < np; i++) {
                json_t *g = json_array_get(json_array_get(micro, a), i);
                for (size_t j = 0; j < params[i].numel; j++)
                    params[i].grad[j] += (float)json_number_value(json_array_get(g, j));
            }
        }
        grads_scale(params, np, 1.0f / accum);
        double lr = schedule_lr(&sched, base_lr, (int64_t)s);
        CHECK_NEAR(lr, json_number_value(json_object_get(st, "lr")), 1e-15, 1e-12);
        json_t *jn = json_object_get(st, "pre_clip_norm");
        double norm = clip_grad_norm(params, np, max_norm);
        if (json_is_number(jn)) CHECK_NEAR(norm, json_number_value(jn), 0, 1e-6);
        OprmError err;
        CHECK(adamw_step(opt, params, np, lr, &err) == 0);
        json_t *after = json_object_get(st, "params_after");
        for (int i = 0; i < np; i++) {
            double e = max_rel_err(params[i].data, json_array_get(after, i), params[i].numel);
            if (!(e <= worst)) worst = e;
        }
    }
    fprintf(stderr, "  case %s: %zu steps, max relative parameter error %.3g\n", name, json_array_size(steps), worst);
    CHECK(worst <= 1e-6);
    CHECK(opt->step == json_integer_value(json_object_get(c, "final_step")));
    for (int i = 0; i < np; i++) {
        int k = i; /* every fixture tensor is trainable: slots align with params */
        CHECK(max_rel_err(opt->slots[k].m, json_array_get(json_object_get(c, "final_m"), i), params[i].numel) <= 1e-5);
        CHECK(max_rel_err(opt->slots[k].v, json_array_get(json_object_get(c, "final_v"), i), params[i].numel) <= 1e-5);
    }
    adamw_free(opt);
    for (int i = 0; i < np; i++) {
        free(params[i].data);
        free(params[i].grad);
    }
}

static void test_against_torch(void) {
    json_t *root = load_fixture();
    CHECK(root != NULL);
    if (!root) return;
    json_t *cases = json_object_get(root, "cases");
    CHECK(json_array_size(cases) == 4);
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) run_case(c);
    json_decref(root);
}

static void test_decay_rule(void) {
    CHECK(adamw_param_decays("model.layers.0.mlp.up_proj.weight") == 1);
    CHECK(adamw_param_decays("model.embed_tokens.weight") == 1);
    CHECK(adamw_param_decays("lm_head.weight") == 1);
    CHECK(adamw_param_decays("model.layers.3.self_attn.q_proj.bias") == 0);
    CHECK(adamw_param_decays("model.layers.0.input_layernorm.weight") == 0);
    CHECK(adamw_param_decays("model.layers.0.post_attention_layernorm.weight") == 0);
    CHECK(adamw_param_decays("model.norm.weight") == 0);
    CHECK(adamw_param_decays("model.layers.1.self_attn.q_norm.weight") == 0);
    CHECK(adamw_param_decays("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight") == 1);
}

/* Frozen tensors (grad NULL) get no state and stay bit-identical; weight
 * decay with zero gradient shrinks exactly by (1 - lr*wd) on the first step
 * (m = v = 0 there, so the Adam term is 0 / (0 + eps) = 0). */
static void test_frozen_and_pure_decay(void) {
    float w[3] = {1.0f, -2.0f, 0.5f}, gw[3] = {0, 0, 0}, frozen[2] = {3.0f, 4.0f};
    ModelParam p[2] = {{.name = "frozen.weight", .data = frozen, .grad = NULL, .numel = 2},
                       {.name = "a.weight", .data = w, .grad = gw, .numel = 3}};
    AdamWConfig cfg = {0.9, 0.999, 1e-8, 0.1};
    AdamW *opt = adamw_new(p, 2, &cfg);
    CHECK(opt->nslots == 1);
    OprmError err;
    CHECK(adamw_step(opt, p, 2, 0.5, &err) == 0);
    CHECK(frozen[0] == 3.0f && frozen[1] == 4.0f);
    CHECK_NEAR(w[0], 1.0 * (1 - 0.05), 0, 1e-7);
    CHECK_NEAR(w[1], -2.0 * (1 - 0.05), 0, 1e-7);
    /* Mismatched parameter lists are refused with a message naming the tensor. */
    ModelParam q[1] = {{.name = "b.weight", .data = w, .grad = gw, .numel = 3}};
    CHECK(adamw_step(opt, q, 1, 0.5, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "b.weight");
    adamw_free(opt);
}

/* Norm over many chunks equals the double-precision reference, and clipping
 * leaves gradients whose norm is max_norm (up to the 1e-6 guard). */
static void test_clip_large(void) {
    size_t n = 100003;
    float *g = malloc(n * sizeof(float));
    double ref = 0;
    for (size_t i = 0; i < n; i++) {
        g[i] = (float)((int)(i % 17) - 8) * 0.25f;
        ref += (double)g[i] * g[i];
    }
    ref = sqrt(ref);
    ModelParam p = {.name = "x.weight", .data = g, .grad = g, .numel = n};
    CHECK_NEAR(grad_global_norm(&p, 1), ref, 0, 1e-12);
    CHECK_NEAR(clip_grad_norm(&p, 1, 2.0), ref, 0, 1e-12);
    CHECK_NEAR(grad_global_norm(&p, 1), 2.0, 0, 1e-6);
    /* Below the threshold: untouched. */
    float before = g[5];
    CHECK_NEAR(clip_grad_norm(&p, 1, 10.0), 2.0, 0, 1e-6);
    CHECK(g[5] == before);
    free(g);
}

static void test_schedules(void) {
    Schedule lin = {SCHED_LINEAR, 10, 110};
    CHECK(schedule_factor(&lin, 0) == 0.0);
    CHECK_NEAR(schedule_factor(&lin, 5), 0.5, 0, 1e-15);
    CHECK_NEAR(schedule_factor(&lin, 10), 1.0, 0, 1e-15);
    CHECK_NEAR(schedule_factor(&lin, 60), 0.5, 0, 1e-15);
    CHECK_NEAR(schedule_factor(&lin, 109), 0.01, 0, 1e-12);
    CHECK(schedule_factor(&lin, 110) == 0.0);
    CHECK(schedule_factor(&lin, 200) == 0.0);
    Schedule cosine = {SCHED_COSINE, 4, 104};
    CHECK_NEAR(schedule_factor(&cosine, 2), 0.5, 0, 1e-15);
    CHECK_NEAR(schedule_factor(&cosine, 4), 1.0, 0, 1e-15);
    CHECK_NEAR(schedule_factor(&cosine, 54), 0.5, 1e-15, 1e-12);
    CHECK_NEAR(schedule_factor(&cosine, 29), 0.5 * (1 + sqrt(0.5)), 0, 1e-12); /* progress 1/4: cos(pi/4) */
    CHECK_NEAR(schedule_factor(&cosine, 104), 0.0, 1e-15, 0);
    Schedule constant = {SCHED_CONSTANT, 3, 50};
    CHECK_NEAR(schedule_factor(&constant, 1), 1.0 / 3, 0, 1e-15);
    CHECK(schedule_factor(&constant, 3) == 1.0);
    CHECK(schedule_factor(&constant, 49) == 1.0);
    Schedule nowarm = {SCHED_LINEAR, 0, 4};
    CHECK(schedule_factor(&nowarm, 0) == 1.0);
    CHECK_NEAR(schedule_lr(&nowarm, 2e-5, 1), 1.5e-5, 0, 1e-12);
    /* Warmup as a ratio: ceil(total * ratio), steps win when given. */
    CHECK(schedule_warmup_steps(0, 0.1, 95) == 10);
    CHECK(schedule_warmup_steps(0, 0.1, 100) == 10);
    CHECK(schedule_warmup_steps(7, 0.5, 100) == 7);
    CHECK(schedule_warmup_steps(0, 0.0, 100) == 0);
    SchedKind k;
    OprmError err;
    CHECK(schedule_kind_parse("cosine", &k, &err) == 0 && k == SCHED_COSINE);
    CHECK(schedule_kind_parse("polynomial", &k, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "polynomial");
}

/* optimizer.bin round trip is bit-exact, corruption and mismatches refused. */
static void test_state_file(void) {
    float w[4] = {1, 2, 3, 4}, gw[4] = {0.1f, -0.2f, 0.3f, -0.4f}, b[2] = {1, 1}, gb[2] = {0.5f, 0.25f};
    ModelParam p[2] = {{.name = "l.weight", .data = w, .grad = gw, .numel = 4},
                       {.name = "l.bias", .data = b, .grad = gb, .numel = 2}};
    AdamWConfig cfg = {0.9, 0.999, 1e-8, 0.01};
    AdamW *a = adamw_new(p, 2, &cfg);
    OprmError err;
    for (int s = 0; s < 3; s++) CHECK(adamw_step(a, p, 2, 1e-2, &err) == 0);
    char path[256];
    snprintf(path, sizeof path, "/tmp/oprm_test_opt_%d.bin", (int)getpid());
    CHECK(adamw_save(a, path, &err) == 0);
    AdamW *c = adamw_new(p, 2, &cfg);
    CHECK(adamw_load(c, path, &err) == 0);
    CHECK(c->step == 3);
    CHECK(memcmp(c->slots[0].m, a->slots[0].m, 4 * sizeof(float)) == 0);
    CHECK(memcmp(c->slots[1].v, a->slots[1].v, 2 * sizeof(float)) == 0);
    /* Continuing from the restored state gives bit-identical parameters. */
    float w2[4], b2[2];
    memcpy(w2, w, sizeof w);
    memcpy(b2, b, sizeof b);
    ModelParam p2[2] = {{.name = "l.weight", .data = w2, .grad = gw, .numel = 4},
                        {.name = "l.bias", .data = b2, .grad = gb, .numel = 2}};
    CHECK(adamw_step(a, p, 2, 1e-2, &err) == 0);
    CHECK(adamw_step(c, p2, 2, 1e-2, &err) == 0);
    CHECK(memcmp(w, w2, sizeof w) == 0 && memcmp(b, b2, sizeof b) == 0);
    /* Flip one byte in the moments: checksum refuses it, state untouched. */
    FILE *f = fopen(path, "r+b");
    fseek(f, -12, SEEK_END);
    int ch = fgetc(f);
    fseek(f, -12, SEEK_END);
    fputc(ch ^ 0x40, f);
    fclose(f);
    CHECK(adamw_load(c, path, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "checksum");
    CHECK(c->step == 4);
    /* Truncated file. */
    CHECK(truncate(path, 40) == 0);
    CHECK(adamw_load(c, path, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "truncated");
    /* A model with a different tensor list. */
    CHECK(adamw_save(a, path, &err) == 0);
    ModelParam p3[1] = {{.name = "other.weight", .data = w, .grad = gw, .numel = 4}};
    AdamW *d = adamw_new(p3, 1, &cfg);
    CHECK(adamw_load(d, path, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "2 tensors");
    unlink(path);
    adamw_free(a);
    adamw_free(c);
    adamw_free(d);
}

int main(void) {
    RUN(test_against_torch);
    RUN(test_decay_rule);
    RUN(test_frozen_and_pure_decay);
    RUN(test_clip_large);
    RUN(test_schedules);
    RUN(test_state_file);
    return test_summary();
}
