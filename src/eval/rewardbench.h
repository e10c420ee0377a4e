/* RewardBench (v1) leaderboard arithmetic, so that `oprm eval --rewardbench`
 * reproduces the numbers reward-bench prints: per-subset accuracies are
 * combined into the four sections by example-count-weighted means (with
 * math-prm counted as 984 examples, the size of the six HumanEvalPack subsets
 * together), and the leaderboard score is the plain mean of the four sections.
 * Sources: allenai/reward-bench rewardbench/constants.py (EXAMPLE_COUNTS,
 * SUBSET_MAPPING) and rewardbench/utils.py calculate_scores_per_section;
 * see docs/eval.md. */
#ifndef OPRM_EVAL_REWARDBENCH_H
#define OPRM_EVAL_REWARDBENCH_H

#include <jansson.h>
#include <stddef.h>

#define RB_SECTIONS 4

/* Section 0..3 ("Chat", "Chat Hard", "Safety", "Reasoning") of a RewardBench
 * subset name, or -1 when the name is not one of its 23 subsets. */
int rewardbench_section_of(const char *subset);
/* The weight reward-bench gives the subset (EXAMPLE_COUNTS); 0 if unknown. */
int rewardbench_weight(const char *subset);
const char *rewardbench_section_name(int section);

typedef struct {
    const char *subset;
    double accuracy; /* fraction in [0,1] */
} SubsetAccuracy;

typedef struct {
    double section[RB_SECTIONS];   /* weighted accuracy, fraction */
    int present[RB_SECTIONS];      /* subsets of the section that were given */
    int expected[RB_SECTIONS];     /* subsets the section has */
    double score;                  /* mean of the four sections (reward-bench counts a missing one as 0) */
    int complete;                  /* every section has at least one subset */
    size_t used;                   /* given subsets that are RewardBench subsets */
} RewardBenchScores;

/* Subsets that are not RewardBench names are ignored. */
void rewardbench_scores(const SubsetAccuracy *subsets, size_t n, RewardBenchScores *out);
json_t *rewardbench_json(const RewardBenchScores *s);

#endif
