/* The float32 passes of the softmax head, per x86-64 ISA level like the
 * cells (_cells.h): z += b with the running max, and z = e^(z − m) with the
 * sum. The maths of the head is in _heads.pxi, which calls them. */
#ifndef CRNN_SOFTMAX_H
#define CRNN_SOFTMAX_H

#include <stddef.h>
#include "_cells.h"

#define CRNN_DEFINE_SOFTMAX(SFX, ATTR)                                                 \
static ATTR float crnn_bias_max_##SFX(float *CRNN_RESTRICT z, const float *CRNN_RESTRICT b, \
                                      ptrdiff_t n)                                     \
{                                                                                      \
    float m;                                                                           \
    for (ptrdiff_t j = 0; j < n; j++)                                                  \
        z[j] += b[j];                                                                  \
    m = z[0];                                                                          \
    for (ptrdiff_t j = 1; j < n; j++)                                                  \
        m = z[j] > m ? z[j] : m;                                                       \
    return m;                                                                          \
}                                                                                      \
static ATTR double crnn_exp_sum_##SFX(float *CRNN_RESTRICT z, float m, ptrdiff_t n)    \
{                                                                                      \
    double s0 = 0, s1 = 0;                                                             \
    ptrdiff_t j = 0;                                                                   \
    for (; j < n; j++)                                                                 \
        z[j] = crnn_expf(z[j] - m);                                                    \
    for (j = 0; j + 2 <= n; j += 2) {                                                  \
        s0 += z[j];                                                                    \
        s1 += z[j + 1];                                                                \
    }                                                                                  \
    if (j < n)                                                                         \
        s0 += z[j];                                                                    \
    return s0 + s1;                                                                    \
}

CRNN_DEFINE_SOFTMAX(base, )
#if CRNN_HAVE_X86_LEVELS
CRNN_DEFINE_SOFTMAX(avx2, __attribute__((target("avx2"))))
CRNN_DEFINE_SOFTMAX(avx512, __attribute__((target("avx512f"))))
#else   /* one level: every slot of the tables below is the baseline */
#define crnn_bias_max_avx2 crnn_bias_max_base
#define crnn_bias_max_avx512 crnn_bias_max_base
#define crnn_exp_sum_avx2 crnn_exp_sum_base
#define crnn_exp_sum_avx512 crnn_exp_sum_base
#endif

typedef float (*crnn_bias_max_fn)(float *, const float *, ptrdiff_t);
typedef double (*crnn_exp_sum_fn)(float *, float, ptrdiff_t);
static const crnn_bias_max_fn crnn_bias_max_f[3] = {crnn_bias_max_base, crnn_bias_max_avx2,
                                                    crnn_bias_max_avx512};
static const crnn_exp_sum_fn crnn_exp_sum_f[3] = {crnn_exp_sum_base, crnn_exp_sum_avx2,
                                                  crnn_exp_sum_avx512};

#endif
