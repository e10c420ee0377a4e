/* The CUDA entry points of a build without the CUDA toolkit (or NO_CUDA=1):
 * --device cuda is refused with a message that says how to get it. Release
 * builds with CUDA link src/cuda/engine_cuda.cu instead (the Makefile leaves
 * this file out of them); the sanitizer build always uses this one. */
#include <stdio.h>

#include "engine/engine_impl.h"

int cuda_built(void) {
    return 0;
}

int cuda_device_count(char *why, size_t why_n) {
    if (why) snprintf(why, why_n, "this oprm was built without CUDA");
    return 0;
}

int engine_cuda_init(Engine *e, const Model *m, const EngineOptions *opt, OprmError *err) {
    (void)e;
    (void)m;
    return oprm_fail(err, "--device cuda:%d: this oprm was built without CUDA (rebuild with the CUDA toolkit "
                          "installed: `make` finds nvcc on PATH or in /usr/local/cuda), or use --device cpu",
                     opt->device.index);
}
