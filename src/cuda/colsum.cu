// Column sums into fp32 gradients (biases, q/k norm weights): each thread
// sums one column over a chunk of rows, then one atomic add per chunk, so an
// address sees rows / COLSUM_ROWS atomics, not one per row.
#include "cuda/kernels.cuh"

#define COLSUM_ROWS 128

__global__ void colsum_kernel(float *out, const float *in, int rows, int cols, int ld, int fold) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    int r0 = blockIdx.y * COLSUM_ROWS, r1 = r0 + COLSUM_ROWS < rows ? r0 + COLSUM_ROWS : rows;
    float acc = 0.0f;
    for (int r = r0; r < r1; r++) acc += in[(size_t)r * ld + c];
    atomicAdd(&out[c % fold], acc);
}

void launch_colsum(float *out, const float *in, int rows, int cols, int ld, int fold, cudaStream_t st) {
    if (rows <= 0 || cols <= 0) return;
    dim3 grid((cols + 255) / 256, (rows + COLSUM_ROWS - 1) / COLSUM_ROWS);
    colsum_kernel<<<grid, 256, 0, st>>>(out, in, rows, cols, ld, fold);
}
