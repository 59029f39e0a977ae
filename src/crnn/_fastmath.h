/* Branch-free float32 exp, tanh and sigmoid that compilers vectorise.
 *
 * libm's expf/tanhf are opaque calls, one element at a time; in the cells'
 * pointwise passes they cost more than the matrix products at small and
 * medium sizes.
 * These are written as straight-line arithmetic with selects, so the loops
 * that call them become SIMD loops (with -fno-trapping-math, which lets the
 * compiler compute both sides of a select; setup.py sets it). float64 keeps
 * libm.
 *
 * crnn_expf(x): Cody-Waite reduction x = n·ln2 + r, |r| <= ln2/2, then a
 *   degree-6 polynomial (relative error 6e-9 on that interval, fitted for
 *   relative error) times 2^n built in the exponent bits. x is clamped to
 *   88 (e^88 = 1.65e38, below FLT_MAX) so that 2^n stays a float; results
 *   below 2^-126 are flushed to 0; NaN propagates, and the integer
 *   conversion never sees it (a NaN converted to int is undefined).
 * crnn_tanhf(x): for |x| < 0.625 an odd polynomial (x + x^3·Q(x^2), Q of
 *   degree 4, fitted for relative error, < 1 ulp); beyond, 1 − 2/(e^{2|x|} + 1)
 *   with |x| capped at 10 (beyond 9.01 tanh rounds to 1); the sign restored last.
 *   Within 2 ulp of the correctly rounded tanh over all of float32
 *   (tests/test_fastmath.py checks it); NaN propagates, ±inf give ±1.
 * crnn_sigmoidf(x) = 1 / (1 + e^−x), with e^−x from crnn_expf (so −x is
 *   clamped to 88: σ(x) for x < −88 is 1/(1 + e^88) ≈ 6e−39, not 0/0).
 *
 * CRNN_RESTRICT is C99's restrict where the compiler has it under some name
 * (MSVC compiles these headers as C89 plus extensions: `__restrict`).
 */
#ifndef CRNN_FASTMATH_H
#define CRNN_FASTMATH_H

#include <math.h>
#include <stdint.h>

#if defined(_MSC_VER)
#define CRNN_RESTRICT __restrict
#elif defined(__GNUC__) || defined(__clang__)
#define CRNN_RESTRICT __restrict__
#else
#define CRNN_RESTRICT
#endif

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
    float xc = x < lo ? lo : x;             /* NaN passes through both */
    xc = xc > 88.0f ? 88.0f : xc;
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
    s.i = ((int32_t)(n == n ? n : 0.0f) + 127) << 23;   /* p is NaN already */
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

CRNN_INLINE float crnn_sigmoidf(float x)
{
    return 1.0f / (1.0f + crnn_expf(-x));
}

CRNN_INLINE double crnn_sigmoid(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

#endif
