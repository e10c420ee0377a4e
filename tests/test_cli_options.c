/* The option table (issue 12 item 10): one spelling table for every
 * subcommand, TRL / Hugging Face spellings (--max_length,
 * --model_name_or_path, --output_dir, --lora_r, --lora_alpha,
 * --lora_target_modules with PEFT names) and the short dash forms (--max-len,
 * --model, --output, --lora-rank) accepted alike by train, score, eval, bon,
 * audit and serve; every flag that --help lists is accepted; --help comes
 * from the same rows. */
#include <stdint.h>

#include "cli/options.h"
#include "train/checkpoint.h"
#include "train_testutil.h"

static char tmp_dir[] = "/tmp/oprm_test_cli_options_XXXXXX";
static char model[TINY_PATH], data[TINY_PATH];

typedef struct {
    int n, flag;
    int64_t big;
    double x;
    const char *s, *list[3], *opt;
    int count;
} Vals;

static void table(Options *o, Vals *v) {
    memset(v, 0, sizeof *v);
    options_init(o, "t");
    options_section(o, "Heading:");
    options_add(o, OPT(OPT_NAMES_MAX_LEN, "N", "length\nsecond line", OPT_INT, &v->n, 1, 100));
    options_add(o, OPT("--big_steps", "N", "an int64", OPT_I64, &v->big, 0, 9.2e18));
    options_add(o, OPT("--rate", "X", "a number", OPT_DOUBLE, &v->x, 0, 1));
    options_add(o, OPT(OPT_NAMES_OUTPUT, "DIR", "out", OPT_STRING, &v->s));
    options_add(o, OPT("--on", NULL, "a flag", OPT_FLAG, &v->flag, .ival = 7));
    options_add(o, OPT(OPT_NAMES_DATA, "FILE", "files", OPT_LIST, v->list, .ival = 3, .count = &v->count, .greedy = 1));
    options_add(o, OPT("--resume", "DIR", "optional value", OPT_STRING, &v->opt, .optional_value = "latest"));
}

static int parse(Options *o, const char *line) {
    char buf[512], *argv[32];
    int argc = 0;
    snprintf(buf, sizeof buf, "t %s", line);
    for (char *t = strtok(buf, " "); t && argc < 32; t = strtok(NULL, " ")) argv[argc++] = t;
    return options_parse(o, argc, argv);
}

static void test_parse(void) {
    Options o;
    Vals v;
    table(&o, &v);
    CHECK(parse(&o, "--max_length 5 --big-steps=9000000000 --rate 0.5 --output_dir d --on") == OPTIONS_OK);
    CHECK(v.n == 5 && v.big == 9000000000LL && v.x == 0.5 && !strcmp(v.s, "d") && v.flag == 7);
    CHECK(options_find(&o, "--max-len")->seen == 1);
    /* Every spelling of a row, '-' = '_', '=value'. */
    const char *spellings[] = {"--max-len 6", "--max_len=6", "--max-length 6", "--max_length=6"};
    for (int i = 0; i < 4; i++) {
        table(&o, &v);
        CHECK(parse(&o, spellings[i]) == OPTIONS_OK && v.n == 6);
    }
    table(&o, &v);
    CHECK(parse(&o, "-o x") == OPTIONS_OK && !strcmp(v.s, "x"));
    table(&o, &v);
    CHECK(parse(&o, "--output=y") == OPTIONS_OK && !strcmp(v.s, "y"));
    /* Greedy list, capacity, optional value. */
    table(&o, &v);
    CHECK(parse(&o, "--data a b --resume --on") == OPTIONS_OK);
    CHECK(v.count == 2 && !strcmp(v.list[1], "b") && !strcmp(v.opt, "latest") && v.flag == 7);
    table(&o, &v);
    CHECK(parse(&o, "--resume ck") == OPTIONS_OK && !strcmp(v.opt, "ck"));
    table(&o, &v);
    CHECK(parse(&o, "--data a b c d") == OPTIONS_ERROR);
    /* Errors: unknown, missing value, bad value, value to a flag, help. */
    table(&o, &v);
    CHECK(parse(&o, "--max-lenx 5") == OPTIONS_ERROR);
    CHECK(parse(&o, "--max-len") == OPTIONS_ERROR);
    CHECK(parse(&o, "--max-len 0") == OPTIONS_ERROR);
    CHECK(parse(&o, "--max-len 5x") == OPTIONS_ERROR);
    CHECK(parse(&o, "--rate 2") == OPTIONS_ERROR);
    CHECK(parse(&o, "--on=1") == OPTIONS_ERROR);
    CHECK(parse(&o, "stray") == OPTIONS_ERROR);
    CHECK(parse(&o, "--rate 0.1 -h") == OPTIONS_HELP);
}

static void test_help_from_rows(void) {
    Options o;
    Vals v;
    table(&o, &v);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    options_help(&o, f);
    fclose(f);
    CHECK_STR_CONTAINS(buf, "Heading:\n");
    CHECK_STR_CONTAINS(buf, "  --max_length N (--max-len)");
    CHECK_STR_CONTAINS(buf, "length\n");
    CHECK_STR_CONTAINS(buf, "second line\n");
    CHECK_STR_CONTAINS(buf, "  --output_dir DIR (--output, -o)");
    CHECK_STR_CONTAINS(buf, "  --resume [DIR]");
    CHECK_STR_CONTAINS(buf, "  --on ");
    free(buf);
}

/* Every "--flag" token in `oprm CMD --help`. */
static int help_flags(const char *cmd, char flags[][64], int max, char *help, size_t size) {
    char args[256];
    char *scratch = path_join(tmp_dir, "help.txt");
    snprintf(args, sizeof args, "%s --help", cmd);
    int status = run_oprm(args, scratch, help, size);
    free(scratch);
    CHECK(status == 0);
    int n = 0;
    for (char *p = help; (p = strstr(p, "--")) && n < max;) {
        size_t k = 2;
        while (p[k] && (p[k] == '-' || p[k] == '_' || (p[k] >= 'a' && p[k] <= 'z') || (p[k] >= '0' && p[k] <= '9'))) k++;
        int dup = 0;
        if (k > 3 && p[-1] != '-' && k < 64) {
            for (int i = 0; i < n; i++) dup |= strlen(flags[i]) == k && !strncmp(flags[i], p, k);
            if (!dup) {
                memcpy(flags[n], p, k);
                flags[n++][k] = 0;
            }
        }
        p += k;
    }
    return n;
}

static void test_every_command(void) {
    static const char *cmds[] = {"train", "score", "eval", "bon", "audit", "serve"};
    static char flags[160][64];
    char help[32768], text[8192], args[512];
    char *scratch = path_join(tmp_dir, "cli.txt");
    int total = 0;
    for (int c = 0; c < 6; c++) {
        int n = help_flags(cmds[c], flags, 160, help, sizeof help);
        /* The shared spellings, from the one table. */
        CHECK_STR_CONTAINS(help, "--model_name_or_path DIR (--model)");
        CHECK_STR_CONTAINS(help, "--max_length N (--max-len)");
        if (strcmp(cmds[c], "serve")) CHECK_STR_CONTAINS(help, "(--output, -o)");
        if (!strcmp(cmds[c], "train")) {
            CHECK_STR_CONTAINS(help, "--lora_r N (--lora-rank)");
            CHECK_STR_CONTAINS(help, "--lora_alpha X (--lora-alpha)");
            CHECK_STR_CONTAINS(help, "--lora_target_modules LIST (--lora-targets");
            CHECK_STR_CONTAINS(help, "--output_dir DIR");
        }
        /* Every flag the help lists is known to the parser (whatever it then
         * says about the missing value or the missing --model). */
        int known = 0;
        for (int i = 0; i < n; i++) {
            if (!strcmp(flags[i], "--help")) continue;
            snprintf(args, sizeof args, "%s %.63s", cmds[c], flags[i]);
            int status = run_oprm(args, scratch, text, sizeof text);
            int ok = status != 0 && status != 124 && !strstr(text, "unknown option");
            if (!ok) fprintf(stderr, "oprm %s: exit %d: %s\n", args, status, text);
            known += ok;
        }
        CHECK(known == n - (strstr(help, "--help") ? 1 : 0));
        CHECK(n >= 10);
        total += n;
    }
    fprintf(stderr, "  %d flags listed by the six --help texts, each accepted\n", total);
    free(scratch);
}

/* Both spellings give the same result, byte for byte. */
static void test_spellings_agree(void) {
    char args[2048], text[8192];
    char *scratch = path_join(tmp_dir, "cli.txt");
    char *a = path_join(tmp_dir, "a.jsonl"), *b = path_join(tmp_dir, "b.jsonl");
    snprintf(args, sizeof args, "score --model_name_or_path %s --data %s --max_length 100 --output_dir %s "
             "--per_device_eval_batch_size 3", model, data, a);
    CHECK(run_oprm(args, scratch, text, sizeof text) == 0);
    snprintf(args, sizeof args, "score --model %s --data %s --max-len 100 -o %s --batch-size 3", model, data, b);
    CHECK(run_oprm(args, scratch, text, sizeof text) == 0);
    size_t la = 0, lb = 0;
    OprmError err;
    char *ta = read_file(a, &la, &err), *tb = read_file(b, &lb, &err);
    CHECK(ta && tb && la > 100 && la == lb && !memcmp(ta, tb, la));
    free(ta);
    free(tb);
    /* train: TRL/PEFT spellings vs the dash forms: the same run. */
    char *ra = path_join(tmp_dir, "ra"), *rb = path_join(tmp_dir, "rb");
    snprintf(args, sizeof args,
             "train --model_name_or_path %s --data %s --output_dir %s --max_length 160 "
             "--per_device_train_batch_size 2 --max_steps 2 --lora_r 2 --lora_alpha 4 "
             "--lora_target_modules q_proj,v_proj --learning_rate 1e-2 --threads 1 --quiet",
             model, data, ra);
    CHECK(run_oprm(args, scratch, text, sizeof text) == 0);
    snprintf(args, sizeof args,
             "train --model %s --data %s --output %s --max-len 160 --batch-size 2 --max-steps 2 --lora-rank 2 "
             "--lora-alpha 4 --lora-targets v,q --learning-rate 1e-2 --threads 1 --quiet",
             model, data, rb);
    CHECK(run_oprm(args, scratch, text, sizeof text) == 0);
    char *wa = read_in(ra, "adapter/adapter_model.safetensors", &la), *wb = read_in(rb, "adapter/adapter_model.safetensors", &lb);
    CHECK(wa && wb && la == lb && !memcmp(wa, wb, la));
    free(wa);
    free(wb);
    char *ma = read_in(ra, "oprm.json", &la), *mb = read_in(rb, "oprm.json", &lb);
    CHECK_STR_CONTAINS(ma, "\"lora_targets\": \"q_proj,v_proj\"");
    CHECK_STR_CONTAINS(mb, "\"lora_targets\": \"q_proj,v_proj\"");
    CHECK_STR_CONTAINS(ma, "\"lora_rank\": 2");
    free(ma);
    free(mb);
    snprintf(args, sizeof args, "train --model %s --data %s --output %s --lora_r 2 --lora_target_modules q_proj,x_proj",
             model, data, rb);
    CHECK(run_oprm(args, scratch, text, sizeof text) == 1);
    CHECK_STR_CONTAINS(text, "unknown module 'x_proj'");
    free(ra);
    free(rb);
    free(a);
    free(b);
    free(scratch);
}

int main(void) {
    if (tiny_fixture(tmp_dir, model, data, NULL, 4)) return 1;
    RUN(test_parse);
    RUN(test_help_from_rows);
    RUN(test_every_command);
    RUN(test_spellings_agree);
    OprmError err;
    remove_tree(tmp_dir, &err);
    return test_summary();
}
