#include "cli/options.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"

void options_init(Options *o, const char *cmd) {
    memset(o, 0, sizeof *o);
    o->cmd = cmd;
}

Option *options_add(Options *o, Option row) {
    if (o->n == OPTIONS_MAX) {
        fprintf(stderr, "oprm %s: internal error: more than %d options\n", o->cmd, OPTIONS_MAX);
        abort();
    }
    o->rows[o->n] = row;
    return &o->rows[o->n++];
}

void options_section(Options *o, const char *heading) {
    options_add(o, (Option){.kind = OPT_SECTION, .help = heading});
}

/* One name of a '|' list against arg: the same leading dashes, then the same
 * characters with '-' and '_' equal, then the end of arg or '='. */
static int one_name_matches(const char *name, size_t n, const char *arg, const char **value) {
    size_t i = 0;
    for (; i < n; i++) {
        char a = arg[i], b = name[i];
        if (!a) return 0;
        if (i >= 2 || (a != '-' && b != '-')) {
            a = a == '_' ? '-' : a;
            b = b == '_' ? '-' : b;
        }
        if (a != b) return 0;
    }
    if (arg[i] == '=') {
        *value = arg + i + 1;
        return 1;
    }
    if (arg[i]) return 0;
    *value = NULL;
    return 1;
}

int options_name_matches(const char *names, const char *arg, const char **value) {
    if (!names || arg[0] != '-') return 0;
    for (const char *p = names; *p;) {
        size_t n = strcspn(p, "|");
        if (one_name_matches(p, n, arg, value)) return 1;
        p += n + (p[n] == '|');
    }
    return 0;
}

Option *options_find(Options *o, const char *name) {
    const char *v;
    for (int i = 0; i < o->n; i++)
        if (o->rows[i].kind != OPT_SECTION && options_name_matches(o->rows[i].names, name, &v)) return &o->rows[i];
    return NULL;
}

static int set_value(Options *o, Option *r, const char *flag, const char *v) {
    long x;
    double d;
    switch (r->kind) {
    case OPT_STRING:
        *(const char **)r->dst = v;
        return 0;
    case OPT_INT:
        if (arg_long(o->cmd, flag, v, (long)r->lo, (long)r->hi, &x)) return -1;
        *(int *)r->dst = (int)x;
        return 0;
    case OPT_I64:
        if (arg_long(o->cmd, flag, v, r->lo <= -9.2e18 ? INT64_MIN : (long)r->lo,
                     r->hi >= 9.2e18 ? INT64_MAX : (long)r->hi, &x))
            return -1;
        *(int64_t *)r->dst = x;
        return 0;
    case OPT_DOUBLE:
        if (arg_double(o->cmd, flag, v, r->lo, r->hi, &d)) return -1;
        *(double *)r->dst = d;
        return 0;
    case OPT_CUSTOM:
        return r->parse(r->ctx, flag, v);
    case OPT_LIST:
        if (*r->count >= r->ival) {
            if (r->ival == 1)
                fprintf(stderr, "oprm %s: one %s only (got %s and %s)\n", o->cmd, flag, ((const char **)r->dst)[0], v);
            else
                fprintf(stderr, "oprm %s: at most %d %s values\n", o->cmd, r->ival, flag);
            return -1;
        }
        ((const char **)r->dst)[(*r->count)++] = v;
        return 0;
    default:
        return -1;
    }
}

int options_parse(Options *o, int argc, char **argv) {
    for (int i = 1; i < argc;) {
        const char *arg = argv[i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) return OPTIONS_HELP;
        const char *eq = NULL;
        Option *r = NULL;
        for (int k = 0; k < o->n && !r; k++)
            if (o->rows[k].kind != OPT_SECTION && options_name_matches(o->rows[k].names, arg, &eq)) r = &o->rows[k];
        if (!r) {
            int used = o->fallback && arg[0] == '-' ? o->fallback(o->fallback_ctx, argc, argv, i) : 0;
            if (used < 0) return OPTIONS_ERROR;
            if (used == 0) {
                if (arg[0] == '-')
                    fprintf(stderr, "oprm %s: unknown option %.*s (see oprm %s --help)\n", o->cmd,
                            (int)strcspn(arg, "="), arg, o->cmd);
                else
                    fprintf(stderr, "oprm %s: unexpected argument '%s' (see oprm %s --help)\n", o->cmd, arg, o->cmd);
                return OPTIONS_ERROR;
            }
            i += used;
            continue;
        }
        /* The flag as typed, without "=value", for messages. */
        char flag[128];
        snprintf(flag, sizeof flag, "%.*s", (int)strcspn(arg, "="), arg);
        r->seen++;
        if (r->kind == OPT_FLAG) {
            if (eq) {
                fprintf(stderr, "oprm %s: %s takes no value (got '%s')\n", o->cmd, flag, eq);
                return OPTIONS_ERROR;
            }
            *(int *)r->dst = r->ival;
            i++;
            continue;
        }
        const char *v = eq;
        int used = 1;
        if (!v) {
            if (r->optional_value && (i + 1 >= argc || argv[i + 1][0] == '-')) {
                v = r->optional_value;
            } else if (i + 1 < argc) {
                v = argv[i + 1];
                used = 2;
            }
        }
        if (!v || !*v) {
            fprintf(stderr, "oprm %s: %s needs a value (see oprm %s --help)\n", o->cmd, flag, o->cmd);
            return OPTIONS_ERROR;
        }
        if (set_value(o, r, flag, v)) return OPTIONS_ERROR;
        i += used;
        /* A greedy list (eval --data A B C) takes values until the next option. */
        while (r->kind == OPT_LIST && r->greedy && i < argc && argv[i][0] != '-') {
            if (set_value(o, r, flag, argv[i])) return OPTIONS_ERROR;
            i++;
        }
    }
    return OPTIONS_OK;
}

int options_parse_or_help(Options *o, int argc, char **argv) {
    int rc = options_parse(o, argc, argv);
    if (rc == OPTIONS_HELP) options_help(o, stdout);
    return rc;
}

void options_help(const Options *o, FILE *f) {
    if (o->usage) fputs(o->usage, f);
    for (int i = 0; i < o->n; i++) {
        const Option *r = &o->rows[i];
        if (r->kind == OPT_SECTION) {
            fprintf(f, "%s%s\n", i ? "\n" : "", r->help);
            continue;
        }
        char left[160];
        size_t n0 = strcspn(r->names, "|");
        /* "--max_length N"; a value that may be left out in brackets: "--resume [DIR]". */
        int len = snprintf(left, sizeof left, "  %.*s%s%s%s%s", (int)n0, r->names, r->arg ? " " : "",
                           r->optional_value ? "[" : "", r->arg ? r->arg : "", r->optional_value ? "]" : "");
        if (r->names[n0]) {
            /* The other spellings in parentheses. */
            len += snprintf(left + len, sizeof left - (size_t)len, " (");
            for (const char *p = r->names + n0 + 1; *p;) {
                size_t n = strcspn(p, "|");
                len += snprintf(left + len, sizeof left - (size_t)len, "%.*s%s", (int)n, p, p[n] ? ", " : "");
                p += n + (p[n] == '|');
            }
            len += snprintf(left + len, sizeof left - (size_t)len, ")");
        }
        const int col = 40;
        fputs(left, f);
        if (len >= col - 1) fprintf(f, "\n%*s", col, "");
        else fprintf(f, "%*s", col - len, "");
        for (const char *p = r->help ? r->help : ""; *p;) {
            size_t n = strcspn(p, "\n");
            fprintf(f, "%.*s\n", (int)n, p);
            p += n;
            if (*p == '\n') {
                p++;
                if (*p) fprintf(f, "%*s", col, "");
            }
        }
        if (!r->help || !*r->help) fputc('\n', f);
    }
    if (o->fallback_help) fprintf(f, "\n%s", o->fallback_help);
}
