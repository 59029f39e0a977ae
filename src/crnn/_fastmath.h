/* Branch-free float32 exp and tanh that compilers vectorise.
 *
 * libm's expf/tanhf are opaque calls, one element at a time; in the Elman
 * kernels they cost more than the matrix products at small and medium sizes.
 * These are written as straight-line arithmetic with selects, so the loops
 * that call them become SIMD loops (with -fno-trapping-math, which lets the
 * compiler compute both sides of a select; setup.py sets it). float64 keeps
 * libm.
 *
 * crnn_expf(x): Cody-Waite reduction x = n·ln2 + r, |r| <= ln2/2, then a
 *   degree-6 polynomial (relative error 6e-9 on that interval, fitted for
 *   relative error) times 2^n built in the exponent bits. Domain: x <= 88
 *   (crnn calls it with x <= 20); results below 2^-126 are flushed to 0,
 *   NaN propagates.
 * crnn_tanhf(x): for |x| < 0.625 an odd polynomial (x + x^3·Q(x^2), Q of
 *   degree 4, fitted for relative error, < 1 ulp); beyond, 1 − 2/(e^{2|x|} + 1)
 *   with |x| capped at 10 (beyond 9.01 tanh rounds to 1); the sign restored last.
 *   Within 2 ulp of the correctly rounded tanh over all of float32
 *   (tests/test_fastmath.py checks it); NaN propagates, ±inf give ±1.
 */
#ifndef CRNN_FASTMATH_H
#define CRNN_FASTMATH_H

#include <math.h>
#include <stdint.h>

typedef union { float f; int32_t i; } crnn_f32_bits;

/* Forced inline: GCC will not otherwise inline across the per-CPU clones of
 * _rows.h (x86 inlines between different -march only when forced). */
#if defined(__GNUC__)
#define CRNN_INLINE static inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define CRNN_INLINE static __forceinline
#else
#define CRNN_INLINE static inline
#endif

CRNN_INLINE float crnn_expf(float x)
{
    const float lo = -87.33654f;            /* ln(2^-126): below it, 0 */
    float xc = x < lo ? lo : x;             /* NaN passes through */
    /* n = round(x / ln2) with the 1.5·2^23 trick: exact, and vectorisable */
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f;        /* ln2 split: hi part exact in n·hi */
    r = r - n * -2.12194440e-4f;
    float p = 0.00137564f;
    p = p * r + 0.00836639f;
    p = p * r + 0.04166918f;
    p = p * r + 0.16666541f;
    p = p * r + 0.49999991f;
    p = p * r * r + r + 1.0f;
    crnn_f32_bits s;
    s.i = ((int32_t)n + 127) << 23;
    float y = p * s.f;
    return x < lo ? 0.0f : y;
}

CRNN_INLINE float crnn_tanhf(float x)
{
    float a = fabsf(x);
    float u = a * a;
    float q = -0.00580017f;
    q = q * u + 0.020723f;
    q = q * u - 0.05376493f;
    q = q * u + 0.13331736f;
    q = q * u - 0.33333292f;
    float small = a + a * u * q;
    float e = crnn_expf(2.0f * (a > 10.0f ? 10.0f : a));
    float big = 1.0f - 2.0f / (e + 1.0f);
    float t = a < 0.625f ? small : big;
    return copysignf(t, x);
}

#endif
