#include "engine/batching.h"

int batch_next(const size_t *lens, int n, int first, size_t budget) {
    int count = 0;
    size_t tokens = 0;
    while (first + count < n && (count == 0 || tokens + lens[first + count] <= budget)) tokens += lens[first + count++];
    return count;
}
