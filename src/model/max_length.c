#include "model/max_length.h"

int max_length_resolve(int given, int saved, int max_pos, const char *flag, int *out, OprmError *err) {
    if (given > 0) {
        if (max_pos > 0 && given > max_pos)
            return oprm_fail(err, "%s %d is longer than the model's max_position_embeddings (%d); use at most %d",
                             flag, given, max_pos, max_pos);
        *out = given;
        return 0;
    }
    int len = saved > 0 ? saved : OPRM_DEFAULT_MAX_LENGTH;
    if (max_pos > 0 && len > max_pos) len = max_pos;
    *out = len;
    return 0;
}
