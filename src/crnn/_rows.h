/* The float32 elementwise passes of the Elman kernels, compiled for several
 * x86-64 levels.
 *
 * These loops are a large share of a training step at small and medium
 * sizes (the matrix products are BLAS's). A wheel must run on any x86-64,
 * whose baseline is SSE2 (4 floats a vector); with GCC on x86-64 Linux each
 * function is also built for AVX2 and AVX-512 and the loader picks the best
 * one the CPU has (target_clones). Elsewhere they are plain functions.
 * The maths of each pass is documented in _elman.pyx, which calls them.
 */
#ifndef CRNN_ROWS_H
#define CRNN_ROWS_H

#include <stddef.h>
#include "_fastmath.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && __GNUC__ >= 8
/* Chosen by CPU feature (an "arch=" clone would be chosen by CPU model, and
 * miss e.g. AMD). No FMA: every clone rounds exactly like the baseline. */
#define CRNN_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CRNN_MULTIVERSION
#endif

/* a[r·ld + j] = tanh(a[r·ld + j] + bias[j]) for j < n */
CRNN_MULTIVERSION
static void crnn_tanh_rows(float *restrict a, const float *restrict bias,
                           ptrdiff_t rows, ptrdiff_t n, ptrdiff_t ld)
{
    for (ptrdiff_t r = 0; r < rows; r++) {
        float *restrict row = a + r * ld;
        for (ptrdiff_t j = 0; j < n; j++)
            row[j] = crnn_tanhf(row[j] + bias[j]);
    }
}

/* One step of BPTT through tanh, for `rows` rows of n values (row stride ld):
 *   d += g (when add_g);  [*sumsq += ‖d‖²];  v = d·(1 − h²);  g = v;  acc += v
 * sumsq may be NULL. */
CRNN_MULTIVERSION
static void crnn_bptt_tanh_rows(float *restrict g, float *restrict d, const float *restrict h,
                                ptrdiff_t rows, ptrdiff_t n, ptrdiff_t ld, int add_g,
                                double *restrict acc, double *restrict sumsq)
{
    for (ptrdiff_t r = 0; r < rows; r++) {
        float *restrict gr = g + r * ld;
        float *restrict dr = d + r * ld;
        const float *restrict hr = h + r * ld;
        if (add_g)
            for (ptrdiff_t j = 0; j < n; j++)
                dr[j] += gr[j];
        if (sumsq)
            for (ptrdiff_t j = 0; j < n; j++)
                *sumsq += (double)dr[j] * dr[j];
        for (ptrdiff_t j = 0; j < n; j++) {
            float v = dr[j] * (1.0f - hr[j] * hr[j]);
            gr[j] = v;
            acc[j] += v;
        }
    }
}

/* z[j] = exp(z[j] − m) */
CRNN_MULTIVERSION
static void crnn_exp_shift(float *restrict z, float m, ptrdiff_t n)
{
    for (ptrdiff_t j = 0; j < n; j++)
        z[j] = crnn_expf(z[j] - m);
}

#endif
