#include "data/flags.h"

#include <string.h>

const char *const DATA_FLAGS_HELP =
    "Data files (JSONL or a JSON array; see docs/data.md):\n"
    "  --prompt-key K          prompt field (string, message list or HH text) [prompt]\n"
    "  --chosen-key K          preferred response [chosen]\n"
    "  --rejected-key K        other response [rejected]\n"
    "  --chosen-label-key K    quality label of chosen (good/normal/bad or 1..9) [chosen_label]\n"
    "  --rejected-label-key K  quality label of rejected [rejected_label]\n"
    "  --response-key K        response of a point-wise labelled record [response]\n"
    "  --label-key K           its label [label]\n"
    "  --best-key K            best response of a best-of-N set [best]\n"
    "  --others-key K          the other responses of a best-of-N set [others]\n"
    "  --id-key K, --subset-key K   record id and subset [id, subset]\n"
    "  --data-kind KIND        auto, pair, point or best-of-n [auto: from the fields present]\n"
    "  --skip-invalid          skip invalid records and report them (default: stop at the first)\n";

const DataFieldFlag DATA_FIELD_FLAGS[DATA_N_FIELD_FLAGS] = {
    {"--prompt-key", "prompt_key", offsetof(DataFields, prompt)},
    {"--chosen-key", "chosen_key", offsetof(DataFields, chosen)},
    {"--rejected-key", "rejected_key", offsetof(DataFields, rejected)},
    {"--chosen-label-key", "chosen_label_key", offsetof(DataFields, chosen_label)},
    {"--rejected-label-key", "rejected_label_key", offsetof(DataFields, rejected_label)},
    {"--response-key", "response_key", offsetof(DataFields, response)},
    {"--label-key", "label_key", offsetof(DataFields, label)},
    {"--best-key", "best_key", offsetof(DataFields, best)},
    {"--others-key", "others_key", offsetof(DataFields, others)},
    {"--id-key", "id_key", offsetof(DataFields, id)},
    {"--subset-key", "subset_key", offsetof(DataFields, subset)},
};

const char *data_field_get(const DataOptions *o, int k) {
    return *(const char *const *)((const char *)&o->fields + DATA_FIELD_FLAGS[k].offset);
}

void data_field_set(DataOptions *o, int k, const char *name) {
    *(const char **)((char *)&o->fields + DATA_FIELD_FLAGS[k].offset) = name;
}

const char *data_kind_flag_name(int kind) {
    return kind == REC_PAIR ? "pair" : kind == REC_POINT ? "point" : kind == REC_BEST_OF_N ? "best-of-n" : "auto";
}

int data_kind_flag_parse(const char *value, int *kind, OprmError *err) {
    if (!strcmp(value, "auto")) *kind = KIND_AUTO;
    else if (!strcmp(value, "pair")) *kind = REC_PAIR;
    else if (!strcmp(value, "point")) *kind = REC_POINT;
    else if (!strcmp(value, "best-of-n")) *kind = REC_BEST_OF_N;
    else return oprm_fail(err, "--data-kind: unknown kind '%s' (auto, pair, point, best-of-n)", value);
    return 0;
}

/* Compares a flag name allowing '_' for '-'. n: length of the argument's name part. */
static int flag_is(const char *arg, size_t n, const char *name) {
    if (strlen(name) != n) return 0;
    for (size_t i = 0; i < n; i++) {
        char a = arg[i] == '_' ? '-' : arg[i];
        if (a != name[i]) return 0;
    }
    return 1;
}

int data_flag_parse(DataOptions *o, int argc, char **argv, int i, OprmError *err) {
    const char *arg = argv[i];
    if (strncmp(arg, "--", 2)) return 0;
    const char *eq = strchr(arg, '=');
    size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
    if (flag_is(arg, n, "--skip-invalid")) {
        if (eq) return oprm_fail(err, "--skip-invalid takes no value");
        o->skip_invalid = 1;
        o->given |= DATA_GIVEN_SKIP_INVALID;
        return 1;
    }
    int is_kind = flag_is(arg, n, "--data-kind");
    int key = -1;
    for (int k = 0; k < DATA_N_FIELD_FLAGS; k++)
        if (flag_is(arg, n, DATA_FIELD_FLAGS[k].flag)) key = k;
    if (key < 0 && !is_kind) return 0;
    const char *value = eq ? eq + 1 : i + 1 < argc ? argv[i + 1] : NULL;
    if (!value || !value[0])
        return oprm_fail(err, "%.*s needs a value", (int)n, arg);
    if (is_kind) {
        if (data_kind_flag_parse(value, &o->kind, err)) return -1;
        o->given |= DATA_GIVEN_KIND;
    } else {
        data_field_set(o, key, value);
        o->given |= DATA_GIVEN_FIELD(key);
    }
    return eq ? 1 : 2;
}
