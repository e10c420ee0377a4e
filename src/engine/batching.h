/* Token-budget batching: consecutive sequences packed into one forward until
 * the next would pass the budget (no padding, so a batch of short and long
 * sequences fills it). Results never depend on the grouping. */
#ifndef OPRM_ENGINE_BATCHING_H
#define OPRM_ENGINE_BATCHING_H

#include <stddef.h>

/* How many sequences from `first` go into the next batch: at least one (a
 * sequence alone over the budget still gets its own batch: callers size the
 * budget to at least the longest sequence). */
int batch_next(const size_t *lens, int n, int first, size_t budget);

#endif
