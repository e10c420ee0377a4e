/* The demo's synthetic graded task: "Write six even digits." and similar
 * requests, answered by digit strings whose quality is known by construction.
 *
 * A prompt names a rule (even, odd, small = 0-4, large = 5-9) and a length;
 * a response is a digit string of that length. Its true quality is the number
 * of digits that break the rule ("wrong" digits):
 *   good   = 0 wrong,
 *   normal = about a third to a half wrong (digits/3 .. digits/2),
 *   bad    = all or all but one wrong.
 * Neighbouring grades differ by at least two digits, and a bad response to
 * "even" is a fine answer to "odd", so a model must read the prompt to judge.
 * Everything is deterministic in the seed. */
#ifndef OPRM_SYNTH_TASK_H
#define OPRM_SYNTH_TASK_H

#include <stddef.h>
#include <stdint.h>

#include "synth/bpe.h"
#include "util/err.h"

typedef enum { SYNTH_BAD = 0, SYNTH_NORMAL = 1, SYNTH_GOOD = 2 } SynthGrade;

/* "bad", "normal", "good" (the label names of the data readers and RgFT). */
const char *synth_grade_name(SynthGrade g);

/* Deterministic generator (splitmix64). */
typedef struct {
    uint64_t state;
} SynthRng;
void synth_rng_seed(SynthRng *r, uint64_t seed);
uint64_t synth_rng_next(SynthRng *r);
int synth_rng_below(SynthRng *r, int n); /* uniform in [0, n) */
double synth_rng_uniform(SynthRng *r);   /* uniform in [0, 1) */

#define SYNTH_N_RULES 4
#define SYNTH_MIN_DIGITS 3
#define SYNTH_MAX_DIGITS 9
extern const char *const SYNTH_RULE_NAMES[SYNTH_N_RULES];   /* "even", "odd", "small", "large" */
extern const char *const SYNTH_RULE_DIGITS[SYNTH_N_RULES];  /* "02468", "13579", "01234", "56789" */

/* Writes the prompt of rule/digits into out (cap >= 64). */
void synth_prompt(int rule, int digits, char *out, size_t cap);
/* A response of the given grade (out: cap >= digits + 1). */
void synth_response(SynthRng *r, int rule, int digits, SynthGrade g, char *out);
/* Number of wrong digits of response for prompt, or -1 when the prompt is not
 * one of this task's or the response is not a digit string of the right length. */
int synth_count_wrong(const char *prompt, const char *response);
/* The grade of a response with `wrong` wrong digits out of `digits`
 * (-1 for counts between the grades' ranges, which the generator never makes). */
int synth_grade_of(int wrong, int digits);

typedef struct {
    uint64_t seed;
    int digits;           /* response length, SYNTH_MIN_DIGITS..SYNTH_MAX_DIGITS; default 6 */
    int n_train_pairs;    /* default 12000 */
    int n_test_pairs;     /* held-out pairs, never flipped; default 600 */
    double flip_fraction; /* training pairs whose preference is reversed on purpose; default 0.1 */
    int n_train_labels;   /* point-wise labelled responses {prompt, response, label}; default 600 */
    int n_test_labels;    /* default 300 */
    int n_bon;            /* held-out Best-of-N sets; default 200 */
    int bon_size;         /* candidates per set (one good, the rest normal or bad); default 4 */
} SynthOptions;

void synth_default_options(SynthOptions *o);

typedef struct {
    int n_train_pairs, n_flipped, n_test_pairs, n_train_labels, n_test_labels, n_bon;
} SynthSummary;

/* Writes into dir (created if needed), all JSONL, one object per line:
 *   train_pairs.jsonl  {"id","prompt","chosen","rejected","chosen_label","rejected_label","subset"}
 *                      flipped pairs swap chosen and rejected while their labels stay in place, so
 *                      each record is self-consistent but wrong (an annotator's mistake);
 *   train_truth.jsonl  {"id","flipped","chosen_wrong","rejected_wrong"} per training pair;
 *   test_pairs.jsonl   like train_pairs, never flipped;
 *   train_labels.jsonl, test_labels.jsonl   {"id","prompt","response","label"};
 *   test_bon.jsonl     {"id","prompt","best","others"}: best is good, others normal or bad.
 * subset is the pair's kind: "good>normal", "good>bad" or "normal>bad". */
int synth_write_task(const char *dir, const SynthOptions *o, SynthSummary *sum, OprmError *err);

/* The demo's short scoring template (a --template file, format in docs/data.md):
 * a one-line system text, so that a scoring prompt is ~40 tokens instead of ~60. */
extern const char SYNTH_DEMO_TEMPLATE[];

/* Trains the demo tokenizer (up to max_merges merges, 0 = default 400) on the
 * fixed text of the default scoring prompt (spec §6) and of the demo template,
 * and on a sample of this task's prompts and responses (so that scoring
 * prompts stay short), and writes the Hugging Face tokenizer files into dir. */
int synth_write_tokenizer(const char *dir, uint64_t seed, int max_merges, int *vocab_size, OprmError *err);

#endif
