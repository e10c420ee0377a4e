/* Region Flooding Tuning (spec §3): quality labels become a landscape w(k) over
 * the nine levels, which weights the pair loss and the point-wise loss. */
#ifndef OPRM_ORDINAL_RGFT_H
#define OPRM_ORDINAL_RGFT_H

#include "ordinal/ordinal.h"

typedef enum {
    OPRM_LABEL_NONE = 0, /* unlabelled: w == 1 */
    OPRM_LABEL_BAD,      /* region {1,2,3}, centre 2 */
    OPRM_LABEL_NORMAL,   /* region {4,5,6}, centre 5 */
    OPRM_LABEL_GOOD,     /* region {7,8,9}, centre 8 */
    OPRM_LABEL_RATING    /* rating 1..9: centre = rating, region {rating-1..rating+1} clipped */
} OprmLabelKind;

typedef struct {
    OprmLabelKind kind;
    int rating; /* 1..9, only for OPRM_LABEL_RATING */
} OprmLabel;

typedef enum { RGFT_TRIANGLE = 0, RGFT_HARD } RgftMode;

typedef struct {
    RgftMode mode;    /* --rgft-mode triangle|hard */
    double halfwidth; /* --rgft-halfwidth H, default 3 (> 0) */
    double floor;     /* --rgft-floor eps, default 0.01 (0 < eps <= 1) */
} RgftConfig;

#define RGFT_DEFAULT_HALFWIDTH 3.0
#define RGFT_DEFAULT_FLOOR 0.01

RgftConfig rgft_default_config(void);
/* "good" / "normal" / "bad" / "1".."9"; NULL or "" gives OPRM_LABEL_NONE. */
int rgft_parse_label(const char *s, OprmLabel *out, OprmError *err);
/* "triangle" / "hard". */
int rgft_parse_mode(const char *s, RgftMode *out, OprmError *err);
/* Centre level m of a label (2/5/8 or the rating); 0 for unlabelled or invalid. */
int rgft_label_centre(const OprmLabel *label);
/* Region [lo, hi] of a label (1-based, inclusive); -1 for unlabelled or invalid. */
int rgft_label_region(const OprmLabel *label, int *lo, int *hi);
/* The landscape w(1..9) (index k-1) of a label under cfg; w == 1 when unlabelled. */
int rgft_landscape(const OprmLabel *label, const RgftConfig *cfg, double w[OPRM_LEVELS],
                   OprmError *err);
/* 1 when both are labelled and the chosen one's levels (bad {1,2,3}, normal
 * {4,5,6}, good {7,8,9}, a rating r {r}) lie entirely below the rejected one's
 * (such a pair is reported and skipped, spec §3); 0 otherwise: equal or
 * overlapping labels ("normal" vs rating 6) are not a contradiction. The same
 * rule as the data reader's label_contradicts. */
int rgft_labels_contradict(const OprmLabel *chosen, const OprmLabel *rejected);

/* L = -log sum_{i>j} w_c(i) p_c(i) w_r(j) p_r(j) and its gradient w.r.t. both
 * logit vectors (grads may be NULL). */
int rgft_pair_loss(const double zc[OPRM_LEVELS], const double w_c[OPRM_LEVELS],
                   const double zr[OPRM_LEVELS], const double w_r[OPRM_LEVELS], double *loss,
                   double grad_c[OPRM_LEVELS], double grad_r[OPRM_LEVELS], OprmError *err);
/* Point-wise labelled loss L = -log sum_k w(k) p(k) and dL/dz (grad may be NULL). */
int rgft_point_loss(const double z[OPRM_LEVELS], const double w[OPRM_LEVELS], double *loss,
                    double grad[OPRM_LEVELS], OprmError *err);

#endif
