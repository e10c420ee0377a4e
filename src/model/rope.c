/* Rotary position embedding, HF "rotate_half" layout: for i < hd/2 the pair
 * (x[i], x[i + hd/2]) is rotated by angle pos * inv_freq[i]. */
#include <math.h>

#include "model/layers.h"

void rope_tables(float *cos_t, float *sin_t, int max_len, int head_dim, double theta, double factor,
                 double low_freq_factor, double high_freq_factor, int original_max_pos) {
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        double f = 1.0 / pow(theta, (2.0 * i) / head_dim);
        if (factor > 0) { /* Llama-3: slow down low frequencies, keep high ones, blend between */
            double wavelen = 2 * M_PI / f;
            double low_wavelen = original_max_pos / low_freq_factor, high_wavelen = original_max_pos / high_freq_factor;
            if (wavelen > low_wavelen) {
                f = f / factor;
            } else if (wavelen >= high_wavelen) {
                double smooth = (original_max_pos / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                f = (1 - smooth) * f / factor + smooth * f;
            }
        }
        for (int p = 0; p < max_len; p++) {
            cos_t[(size_t)p * half + i] = (float)cos(p * f);
            sin_t[(size_t)p * half + i] = (float)sin(p * f);
        }
    }
}

static void rope_apply(float *x, int rows, int n_heads, int hd, const int32_t *pos, const float *cos_t,
                       const float *sin_t, float sign) {
    int half = hd / 2;
    #pragma omp parallel for schedule(static) if ((size_t)rows * n_heads * hd > OMP_MIN_WORK)
    for (int r = 0; r < rows; r++) {
        const float *c = cos_t + (size_t)pos[r] * half, *s = sin_t + (size_t)pos[r] * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)r * n_heads + h) * hd;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half], sn = sign * s[i];
                v[i] = a * c[i] - b * sn;
                v[i + half] = b * c[i] + a * sn;
            }
        }
    }
}

void rope_forward(float *x, int rows, int n_heads, int hd, const int32_t *pos, const float *cos_t,
                  const float *sin_t) {
    rope_apply(x, rows, n_heads, hd, pos, cos_t, sin_t, 1.0f);
}

/* The rotation is orthogonal: its gradient is the rotation by -angle. */
void rope_backward(float *dx, int rows, int n_heads, int hd, const int32_t *pos, const float *cos_t,
                   const float *sin_t) {
    rope_apply(dx, rows, n_heads, hd, pos, cos_t, sin_t, -1.0f);
}
