#include "train/train_args.h"

#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/flags.h"
#include "dist/dist.h"
#include "model/model.h"
#include "tok/chat.h"

/* The numeric settings: key in training_args, the flag that sets it, where it lives. */
typedef enum { K_DOUBLE, K_INT, K_I64, K_U64 } NumKind;
static const struct {
    const char *key, *flag;
    TrainSetting setting;
    NumKind kind;
    size_t offset;
} numeric[] = {
    {"learning_rate", "--learning_rate", TRAIN_SET_LEARNING_RATE, K_DOUBLE, offsetof(TrainConfig, learning_rate)},
    {"num_train_epochs", "--num_train_epochs", TRAIN_SET_EPOCHS, K_DOUBLE, offsetof(TrainConfig, num_train_epochs)},
    {"max_steps", "--max_steps", TRAIN_SET_MAX_STEPS, K_I64, offsetof(TrainConfig, max_steps)},
    {"per_device_train_batch_size", "--per_device_train_batch_size", TRAIN_SET_BATCH_SIZE, K_INT,
     offsetof(TrainConfig, batch_size)},
    {"gradient_accumulation_steps", "--gradient_accumulation_steps", TRAIN_SET_GRAD_ACCUM, K_INT,
     offsetof(TrainConfig, grad_accum)},
    {"max_length", "--max_length", TRAIN_SET_MAX_LENGTH, K_INT, offsetof(TrainConfig, max_length)},
    {"warmup_steps", "--warmup_steps", TRAIN_SET_WARMUP_STEPS, K_I64, offsetof(TrainConfig, warmup_steps)},
    {"warmup_ratio", "--warmup_ratio", TRAIN_SET_WARMUP_RATIO, K_DOUBLE, offsetof(TrainConfig, warmup_ratio)},
    {"weight_decay", "--weight_decay", TRAIN_SET_WEIGHT_DECAY, K_DOUBLE, offsetof(TrainConfig, weight_decay)},
    {"max_grad_norm", "--max_grad_norm", TRAIN_SET_MAX_GRAD_NORM, K_DOUBLE, offsetof(TrainConfig, max_grad_norm)},
    {"seed", "--seed", TRAIN_SET_SEED, K_U64, offsetof(TrainConfig, seed)},
    {"adam_beta1", "--adam_beta1", TRAIN_SET_ADAM_BETA1, K_DOUBLE, offsetof(TrainConfig, adam_beta1)},
    {"adam_beta2", "--adam_beta2", TRAIN_SET_ADAM_BETA2, K_DOUBLE, offsetof(TrainConfig, adam_beta2)},
    {"adam_epsilon", "--adam_epsilon", TRAIN_SET_ADAM_EPSILON, K_DOUBLE, offsetof(TrainConfig, adam_epsilon)},
    {"rgft_halfwidth", "--rgft-halfwidth", TRAIN_SET_RGFT_HALFWIDTH, K_DOUBLE, offsetof(TrainConfig, rgft.halfwidth)},
    {"rgft_floor", "--rgft-floor", TRAIN_SET_RGFT_FLOOR, K_DOUBLE, offsetof(TrainConfig, rgft.floor)},
    {"label_fraction", "--label-fraction", TRAIN_SET_LABEL_FRACTION, K_DOUBLE, offsetof(TrainConfig, label_fraction)},
    {"lora_rank", "--lora_r", TRAIN_SET_LORA_RANK, K_INT, offsetof(TrainConfig, lora_rank)},
};

static const struct {
    const char *name;
    unsigned bit;
} lora_modules[] = {{"q", LORA_Q}, {"k", LORA_K}, {"v", LORA_V}, {"o", LORA_O},
                    {"gate", LORA_GATE}, {"up", LORA_UP}, {"down", LORA_DOWN}};
#define LORA_ALL (LORA_Q | LORA_K | LORA_V | LORA_O | LORA_GATE | LORA_UP | LORA_DOWN)

int train_lora_targets_parse(const char *list, unsigned *mask, OprmError *err) {
    *mask = 0;
    if (!list || !strcmp(list, "all-linear") || !strcmp(list, "all")) {
        *mask = LORA_ALL;
        return 0;
    }
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ",");
        size_t base = n > 5 && !strncmp(p + n - 5, "_proj", 5) ? n - 5 : n;
        unsigned bit = 0;
        for (size_t i = 0; i < sizeof lora_modules / sizeof *lora_modules; i++)
            if (strlen(lora_modules[i].name) == base && !strncmp(p, lora_modules[i].name, base))
                bit = lora_modules[i].bit;
        if (!bit)
            return oprm_fail(err, "--lora_target_modules: unknown module '%.*s' (use all-linear or a comma list of "
                             "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj or q,k,v,o,gate,up,down)",
                             (int)n, p);
        *mask |= bit;
        p += n + (p[n] == ',');
    }
    if (!*mask) return oprm_fail(err, "--lora_target_modules: empty list (use all-linear or q_proj,v_proj,...)");
    return 0;
}

/* The PEFT spelling of a module mask: "all-linear" or "q_proj,v_proj". */
static json_t *lora_targets_json(unsigned mask) {
    if (mask == LORA_ALL) return json_string("all-linear");
    char buf[128] = "";
    for (size_t i = 0; i < sizeof lora_modules / sizeof *lora_modules; i++)
        if (mask & lora_modules[i].bit) {
            if (buf[0]) strcat(buf, ",");
            strcat(buf, lora_modules[i].name);
            strcat(buf, "_proj");
        }
    return json_string(buf);
}

static const char *rgft_mode_name(const TrainConfig *c) {
    return !c->rgft_enabled ? "none" : c->rgft.mode == RGFT_HARD ? "hard" : "triangle";
}

json_t *train_args_json(const TrainConfig *c) {
    json_t *a = json_object();
    json_t *data = json_array();
    for (int i = 0; i < c->n_data; i++) json_array_append_new(data, json_string(c->data[i]));
    json_object_set_new(a, "model", json_string(c->model_dir));
    json_object_set_new(a, "data", data);
    json_object_set_new(a, "eval_data", c->eval_data ? json_string(c->eval_data) : json_null());
    for (size_t i = 0; i < sizeof numeric / sizeof *numeric; i++) {
        const char *p = (const char *)c + numeric[i].offset;
        if (numeric[i].setting == TRAIN_SET_LORA_RANK) continue; /* with the other LoRA keys below */
        json_t *v = numeric[i].kind == K_DOUBLE ? json_real(*(const double *)p)
                    : numeric[i].kind == K_INT  ? json_integer(*(const int *)p)
                    : numeric[i].kind == K_I64  ? json_integer(*(const int64_t *)p)
                                                : json_integer((json_int_t) * (const uint64_t *)p);
        json_object_set_new(a, numeric[i].key, v);
    }
    /* MPI ranks: the global batch is per_device_train_batch_size x accumulation x world_size. */
    json_object_set_new(a, "world_size", json_integer(dist_size()));
    json_object_set_new(a, "lr_scheduler_type", json_string(schedule_kind_name(c->scheduler)));
    json_object_set_new(a, "loss", json_string(c->loss == TRAIN_LOSS_BT ? "bt" : "oprm"));
    json_object_set_new(a, "rgft_mode", json_string(rgft_mode_name(c)));
    /* transformers' name; where the run trained (a resume may use another device). */
    json_object_set_new(a, "gradient_checkpointing", json_boolean(c->gradient_checkpointing));
    char dev[32];
    json_object_set_new(a, "device", json_string(device_str(c->device, dev, sizeof dev)));
    /* How the data readers read the files (field names, kind, skipping): a
     * resumed run must read them the same way. */
    for (int k = 0; k < DATA_N_FIELD_FLAGS; k++)
        json_object_set_new(a, DATA_FIELD_FLAGS[k].key, json_string(data_field_get(&c->data_opt, k)));
    json_object_set_new(a, "data_kind", json_string(data_kind_flag_name(c->data_opt.kind)));
    json_object_set_new(a, "skip_invalid", json_boolean(c->data_opt.skip_invalid));
    if (c->lora_rank > 0) {
        unsigned mask = LORA_ALL;
        OprmError ignored;
        train_lora_targets_parse(c->lora_targets, &mask, &ignored);
        json_object_set_new(a, "lora_rank", json_integer(c->lora_rank));
        json_object_set_new(a, "lora_alpha", json_real(c->lora_alpha > 0 ? c->lora_alpha : 2.0 * c->lora_rank));
        json_object_set_new(a, "lora_targets", lora_targets_json(mask));
    }
    return a;
}

static int is_set(const TrainConfig *c, TrainSetting s) {
    return !(c->unset & TRAIN_SET_BIT(s));
}

static int refuse(OprmError *err, const char *dir, const char *flag, const char *given, const char *saved) {
    return oprm_fail(err, "%s %s contradicts the run being resumed: %s was trained with %s %s. Leave %s out when "
                     "resuming (a resumed run takes every setting from the run itself), or start a new run in "
                     "another --output_dir",
                     flag, given, dir, flag, saved, flag);
}

static void fmt_double(double x, double other, char *buf, size_t n) {
    char o[64];
    snprintf(buf, n, "%g", x);
    snprintf(o, sizeof o, "%g", other);
    if (!strcmp(buf, o)) snprintf(buf, n, "%.17g", x); /* they differ past %g's digits */
}

/* Two paths name the same file (or, when either does not resolve, the same text). */
static int same_path(const char *a, const char *b) {
    char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
    int same = ra && rb ? !strcmp(ra, rb) : !strcmp(a, b);
    free(ra);
    free(rb);
    return same;
}

static int resume_numeric(TrainConfig *c, const json_t *args, const char *dir, OprmError *err) {
    json_t *saved_steps = json_object_get(args, "max_steps");
    for (size_t i = 0; i < sizeof numeric / sizeof *numeric; i++) {
        json_t *sv = json_object_get(args, numeric[i].key);
        int rank_absent = numeric[i].setting == TRAIN_SET_LORA_RANK && !sv;
        if (!sv && !rank_absent) continue;
        if (sv && !json_is_number(sv))
            return oprm_fail(err, "%s/oprm.json: training_args.%s is not a number", dir, numeric[i].key);
        char *p = (char *)c + numeric[i].offset;
        NumKind k = numeric[i].kind;
        double s = rank_absent ? 0 : json_number_value(sv);
        uint64_t su = rank_absent ? 0 : (uint64_t)json_integer_value(sv);
        /* max_length 0 is "the default", which for a resumed run is the run's. */
        int take = !is_set(c, numeric[i].setting) ||
                   (numeric[i].setting == TRAIN_SET_MAX_LENGTH && *(int *)p == 0);
        /* Another rank count keeps the global batch (docs/distributed.md). */
        json_t *ws = json_object_get(args, "world_size");
        int64_t saved_world = json_is_integer(ws) ? json_integer_value(ws) : 1;
        if (numeric[i].setting == TRAIN_SET_BATCH_SIZE && saved_world != dist_size()) {
            int64_t global = (int64_t)s * saved_world;
            if (take && global % dist_size() == 0) {
                *(int *)p = (int)(global / dist_size());
                continue;
            }
            if (!take && (int64_t)*(int *)p * dist_size() == global) continue;
        }
        if (take) {
            if (k == K_DOUBLE) *(double *)p = s;
            else if (k == K_INT) *(int *)p = (int)s;
            else if (k == K_I64) *(int64_t *)p = (int64_t)json_integer_value(sv);
            else *(uint64_t *)p = su;
            continue;
        }
        double g = k == K_DOUBLE ? *(double *)p : k == K_INT ? *(int *)p : k == K_I64 ? (double)*(int64_t *)p : 0;
        int same = k == K_U64 ? *(uint64_t *)p == su : g == s;
        if (same) continue;
        /* Extending: more steps or epochs than planned. */
        if (numeric[i].setting == TRAIN_SET_MAX_STEPS && (g > s || s == 0)) continue;
        if (numeric[i].setting == TRAIN_SET_EPOCHS &&
            (g > s || (json_is_integer(saved_steps) && json_integer_value(saved_steps) > 0)))
            continue;
        char gb[64], sb[64];
        if (k == K_U64) {
            snprintf(gb, sizeof gb, "%llu", (unsigned long long)*(uint64_t *)p);
            snprintf(sb, sizeof sb, "%llu", (unsigned long long)su);
        } else if (k == K_DOUBLE) {
            fmt_double(g, s, gb, sizeof gb);
            fmt_double(s, g, sb, sizeof sb);
        } else {
            snprintf(gb, sizeof gb, "%.0f", g);
            snprintf(sb, sizeof sb, "%.0f", s);
        }
        return refuse(err, dir, numeric[i].flag, gb, sb);
    }
    return 0;
}

/* A saved string setting: take it when unset, else compare. */
static int resume_string(const json_t *args, const char *key, const char *flag, int set, const char *given,
                         const char **out, const char *dir, OprmError *err) {
    json_t *sv = json_object_get(args, key);
    if (!sv) return 0;
    if (!json_is_string(sv)) return oprm_fail(err, "%s/oprm.json: training_args.%s is not a string", dir, key);
    if (!set) {
        *out = json_string_value(sv);
        return 0;
    }
    return strcmp(given, json_string_value(sv)) ? refuse(err, dir, flag, given, json_string_value(sv)) : 0;
}

/* The data readers' flags: the command line sets them in data_opt.given
 * (c->unset == 0 counts every setting as set, as elsewhere). */
static int resume_data_flags(TrainConfig *c, const json_t *args, const char *dir, OprmError *err) {
    DataOptions *o = &c->data_opt;
    int all_set = c->unset == 0;
    for (int k = 0; k < DATA_N_FIELD_FLAGS; k++) {
        const char *v = NULL;
        if (resume_string(args, DATA_FIELD_FLAGS[k].key, DATA_FIELD_FLAGS[k].flag,
                          all_set || (o->given & DATA_GIVEN_FIELD(k)), data_field_get(o, k), &v, dir, err))
            return -1;
        if (v) data_field_set(o, k, v);
    }
    const char *v = NULL;
    if (resume_string(args, "data_kind", "--data-kind", all_set || (o->given & DATA_GIVEN_KIND),
                      data_kind_flag_name(o->kind), &v, dir, err))
        return -1;
    if (v && data_kind_flag_parse(v, &o->kind, err)) return oprm_prefix(err, "%s/oprm.json: ", dir);
    json_t *skip = json_object_get(args, "skip_invalid");
    if (!skip) return 0;
    if (!json_is_boolean(skip))
        return oprm_fail(err, "%s/oprm.json: training_args.skip_invalid is not true or false", dir);
    int saved = json_is_true(skip);
    if (!all_set && !(o->given & DATA_GIVEN_SKIP_INVALID)) o->skip_invalid = saved;
    else if (o->skip_invalid != saved)
        return oprm_fail(err, "%s contradicts the run being resumed: %s was trained %s --skip-invalid. Leave "
                         "--skip-invalid out when resuming (a resumed run takes every setting from the run itself), "
                         "or start a new run in another --output_dir",
                         o->skip_invalid ? "--skip-invalid" : "leaving out --skip-invalid", dir,
                         saved ? "with" : "without");
    return 0;
}

int train_args_resume(TrainConfig *c, const OprmMeta *meta, const char *dir, OprmError *err) {
    const json_t *args = meta->training_args;
    if (args && !json_is_object(args)) return oprm_fail(err, "%s/oprm.json: training_args is not an object", dir);
    /* The loss is also the checkpoint's head. */
    const char *loss = c->loss == TRAIN_LOSS_BT ? "bt" : "oprm";
    if (meta->head && strcmp(meta->head, loss)) {
        if (is_set(c, TRAIN_SET_LOSS)) return refuse(err, dir, "--loss", loss, meta->head);
        c->loss = !strcmp(meta->head, "bt") ? TRAIN_LOSS_BT : TRAIN_LOSS_OPRM;
    }
    if (meta->chat_format) {
        ChatFormat saved, given;
        if (!is_set(c, TRAIN_SET_CHAT_FORMAT) || !c->chat_format) {
            /* The format the run resolved (from the tokenizer when not given). */
            c->chat_format = meta->chat_format;
        } else if (chat_format_parse(meta->chat_format, &saved, err) == 0 &&
                   chat_format_parse(c->chat_format, &given, err) == 0 && saved != given) {
            return refuse(err, dir, "--chat-format", c->chat_format, meta->chat_format);
        }
    }
    if (!args) return 0;
    json_t *model = json_object_get(args, "model");
    if (json_is_string(model)) {
        if (!is_set(c, TRAIN_SET_MODEL) || !c->model_dir) c->model_dir = json_string_value(model);
        else if (!same_path(c->model_dir, json_string_value(model)))
            return refuse(err, dir, "--model_name_or_path", c->model_dir, json_string_value(model));
    }
    json_t *data = json_object_get(args, "data");
    if (json_is_array(data) && json_array_size(data) > 0 && json_array_size(data) <= TRAIN_MAX_DATA_FILES) {
        size_t n = json_array_size(data);
        if (!is_set(c, TRAIN_SET_DATA) || c->n_data == 0) {
            for (size_t i = 0; i < n; i++) {
                const char *s = json_string_value(json_array_get(data, i));
                if (!s) return oprm_fail(err, "%s/oprm.json: training_args.data[%zu] is not a string", dir, i);
                c->data[i] = s;
            }
            c->n_data = (int)n;
        } else {
            int same = (size_t)c->n_data == n;
            for (size_t i = 0; same && i < n; i++) {
                const char *s = json_string_value(json_array_get(data, i));
                same = s && same_path(c->data[i], s);
            }
            if (!same) {
                const char *s = json_string_value(json_array_get(data, 0));
                return refuse(err, dir, "--data", c->data[0], s ? s : "?");
            }
        }
    }
    if (resume_numeric(c, args, dir, err)) return -1;
    if (resume_data_flags(c, args, dir, err)) return -1;
    const char *v = NULL;
    if (resume_string(args, "lr_scheduler_type", "--lr_scheduler_type", is_set(c, TRAIN_SET_SCHEDULER),
                      schedule_kind_name(c->scheduler), &v, dir, err))
        return -1;
    if (v && schedule_kind_parse(v, &c->scheduler, err)) return oprm_prefix(err, "%s/oprm.json: ", dir);
    v = NULL;
    if (resume_string(args, "rgft_mode", "--rgft-mode", is_set(c, TRAIN_SET_RGFT_MODE), rgft_mode_name(c), &v, dir,
                      err))
        return -1;
    if (v) {
        c->rgft_enabled = strcmp(v, "none") != 0;
        if (c->rgft_enabled && rgft_parse_mode(v, &c->rgft.mode, err)) return oprm_prefix(err, "%s/oprm.json: ", dir);
    }
    /* Recomputation changes memory, not results: taken from the run when not
     * given (the run may need it to fit), never a contradiction. */
    json_t *gc = json_object_get(args, "gradient_checkpointing");
    if (json_is_boolean(gc) && !is_set(c, TRAIN_SET_GRADIENT_CHECKPOINTING)) c->gradient_checkpointing = json_is_true(gc);
    if (c->lora_rank > 0) {
        json_t *alpha = json_object_get(args, "lora_alpha");
        if (json_is_number(alpha)) {
            double given = c->lora_alpha > 0 ? c->lora_alpha : 2.0 * c->lora_rank;
            if (!is_set(c, TRAIN_SET_LORA_ALPHA) || c->lora_alpha <= 0) c->lora_alpha = json_number_value(alpha);
            else if (given != json_number_value(alpha)) {
                char gb[64], sb[64];
                fmt_double(given, json_number_value(alpha), gb, sizeof gb);
                fmt_double(json_number_value(alpha), given, sb, sizeof sb);
                return refuse(err, dir, "--lora_alpha", gb, sb);
            }
        }
        json_t *targets = json_object_get(args, "lora_targets");
        if (json_is_string(targets)) {
            if (!is_set(c, TRAIN_SET_LORA_TARGETS) || !c->lora_targets) {
                c->lora_targets = json_string_value(targets);
            } else {
                unsigned a, b;
                if (train_lora_targets_parse(c->lora_targets, &a, err) ||
                    train_lora_targets_parse(json_string_value(targets), &b, err))
                    return -1;
                if (a != b) return refuse(err, dir, "--lora_target_modules", c->lora_targets, json_string_value(targets));
            }
        }
    }
    return 0;
}
