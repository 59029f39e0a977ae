/* The per-step recurrent product, C (m×n) [+]= A (m×k) · B (k×n), with B —
 * W_h, in one of its two orientations — packed once per call into column
 * panels and reused for all T steps ("persistent weights", as oneDNN's RNN
 * primitive does with cblas_sgemm_pack).
 *
 * Each time step multiplies a few batch rows by the same matrix. Through
 * BLAS every one of those small calls repacks all of W_h; here it is packed
 * once, and the product of a step runs on the calling thread, so that the
 * driver can split a step by hidden units or batch rows over crnn's own
 * threads.
 *
 * Packed layout: panel q holds columns [q·NR, q·NR + NR) of B, row after row
 * (k rows of NR values, zero past column n). The micro-kernel keeps an MR×NR
 * block of C in vector registers and, for each p < k, adds A[i, p] times row
 * p of the panel: NR/W vector loads feed MR·NR/W fused multiply-adds.
 *
 * With GCC or Clang the kernels are built for the baseline (128-bit GCC
 * vectors: SSE2, NEON) and, on x86-64, for AVX2+FMA and AVX-512;
 * crnn_gemm_init() picks the best the CPU has and crnn_gemm_select() forces
 * a level (for tests). Compilers without vector extensions (MSVC), or a
 * build with CRNN_NO_KERNEL defined (setup.py: CRNN_NO_KERNEL=1), get none:
 * CRNN_HAVE_GEMM is 0 and the driver calls BLAS for every step instead.
 */
#ifndef CRNN_RECURRENT_H
#define CRNN_RECURRENT_H

#include <stddef.h>
#include <string.h>
#include "_fastmath.h"

#if (defined(__GNUC__) || defined(__clang__)) && !defined(CRNN_NO_KERNEL)
#define CRNN_HAVE_GEMM 1

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__clang__) || __GNUC__ >= 8)
#define CRNN_GEMM_X86 1
#define CRNN_T_AVX512 __attribute__((target("avx512f,fma")))
#define CRNN_T_AVX2 __attribute__((target("avx2,fma")))
#else
#define CRNN_GEMM_X86 0
#endif
#define CRNN_T_BASE

/* Rows of A taken at a time (so that they stay in L2 across the panels) and
 * the depth of one pass (so that a panel's share stays in L2 across them). */
#define CRNN_GEMM_MC 64
#define CRNN_GEMM_KC 256

/* One ISA level: vector type V of W elements of type T, register block MR×(NV·W).
 * B(p, j) = B[p·rs + j·cs]; A(i, p) = A[i·rs + p·cs]; panel q of P starts at P + q·ps. */
#define CRNN_DEFINE_GEMM(NAME, T, W, MR, NV, ATTR)                                        \
typedef T NAME##_v __attribute__((vector_size((W) * sizeof(T)), aligned(sizeof(T))));     \
                                                                                          \
static ATTR void NAME##_pack(const T *CRNN_RESTRICT B, ptrdiff_t k, ptrdiff_t n, ptrdiff_t rs,  \
                             ptrdiff_t cs, T *CRNN_RESTRICT P)                                 \
{                                                                                         \
    const ptrdiff_t NR = (W) * (NV);                                                      \
    for (ptrdiff_t j0 = 0; j0 < n; j0 += NR, P += k * NR) {                               \
        ptrdiff_t nr = n - j0 < NR ? n - j0 : NR;                                         \
        if (nr < NR)                                                                      \
            memset(P, 0, k * NR * sizeof(T));                                             \
        if (cs == 1)                                                                      \
            for (ptrdiff_t p = 0; p < k; p++)                                             \
                memcpy(P + p * NR, B + p * rs + j0, nr * sizeof(T));                      \
        else /* read B along its rows of memory (columns of the panel) */                 \
            for (ptrdiff_t c = 0; c < nr; c++)                                            \
                for (ptrdiff_t p = 0; p < k; p++)                                         \
                    P[p * NR + c] = B[p * rs + (j0 + c) * cs];                            \
    }                                                                                     \
}                                                                                         \
                                                                                          \
/* One block of `mr` (a constant after inlining) rows against one panel. */               \
static inline __attribute__((always_inline)) ATTR void NAME##_block(                      \
    const int mr, ptrdiff_t k, const T *CRNN_RESTRICT A, ptrdiff_t rs, ptrdiff_t cs,           \
    const T *CRNN_RESTRICT P, T *CRNN_RESTRICT C, ptrdiff_t ldc, ptrdiff_t nr, int accumulate)       \
{                                                                                         \
    NAME##_v acc[MR][NV];                                                                 \
    for (int r = 0; r < mr; r++)                                                          \
        for (int q = 0; q < (NV); q++)                                                    \
            acc[r][q] = (NAME##_v){0};                                                    \
    for (ptrdiff_t p = 0; p < k; p++) {                                                   \
        NAME##_v b[NV];                                                                   \
        for (int q = 0; q < (NV); q++)                                                    \
            b[q] = *(const NAME##_v *)(P + p * (W) * (NV) + q * (W));                    \
        for (int r = 0; r < mr; r++) {                                                    \
            T a = A[r * rs + p * cs];                                                     \
            for (int q = 0; q < (NV); q++)                                                \
                acc[r][q] += a * b[q];                                                    \
        }                                                                                 \
    }                                                                                     \
    if (nr == (W) * (NV)) {                                                               \
        for (int r = 0; r < mr; r++)                                                      \
            for (int q = 0; q < (NV); q++) {                                              \
                NAME##_v *c = (NAME##_v *)(C + r * ldc + q * (W));                        \
                *c = accumulate ? *c + acc[r][q] : acc[r][q];                             \
            }                                                                             \
    } else {                                                                              \
        for (int r = 0; r < mr; r++) {                                                    \
            T tmp[(W) * (NV)];                                                            \
            memcpy(tmp, acc[r], sizeof tmp);                                              \
            for (ptrdiff_t c = 0; c < nr; c++)                                            \
                C[r * ldc + c] = accumulate ? C[r * ldc + c] + tmp[c] : tmp[c];           \
        }                                                                                 \
    }                                                                                     \
}                                                                                         \
                                                                                          \
/* C (m×n, row stride ldc) = A·B [+ C], B packed in P (panel stride ps). */               \
static ATTR void NAME(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const T *CRNN_RESTRICT A,         \
                      ptrdiff_t rs, ptrdiff_t cs, const T *CRNN_RESTRICT P, ptrdiff_t ps,      \
                      T *CRNN_RESTRICT C, ptrdiff_t ldc, int accumulate)                       \
{                                                                                         \
    const ptrdiff_t NR = (W) * (NV);                                                      \
    for (ptrdiff_t i0 = 0; i0 < m; i0 += CRNN_GEMM_MC) {                                  \
        ptrdiff_t i1 = m - i0 < CRNN_GEMM_MC ? m : i0 + CRNN_GEMM_MC;                     \
        for (ptrdiff_t p0 = 0; p0 < k || p0 == 0; p0 += CRNN_GEMM_KC) {                   \
            ptrdiff_t kc = k - p0 < CRNN_GEMM_KC ? k - p0 : CRNN_GEMM_KC;                 \
            int acc = accumulate || p0 > 0;                                               \
            for (ptrdiff_t j0 = 0; j0 < n; j0 += NR) {                                    \
                const T *Pq = P + (j0 / NR) * ps + p0 * NR;                               \
                const T *Ap = A + p0 * cs;                                                \
                ptrdiff_t nr = n - j0 < NR ? n - j0 : NR, i = i0;                         \
                for (; i + (MR) <= i1; i += (MR))                                         \
                    NAME##_block(MR, kc, Ap + i * rs, rs, cs, Pq, C + i * ldc + j0, ldc,  \
                                 nr, acc);                                                \
                for (; i < i1; i++)                                                       \
                    NAME##_block(1, kc, Ap + i * rs, rs, cs, Pq, C + i * ldc + j0, ldc,   \
                                 nr, acc);                                                \
            }                                                                             \
            if (k <= 0)                                                                   \
                break;                                                                    \
        }                                                                                 \
    }                                                                                     \
}

#if CRNN_GEMM_X86
CRNN_DEFINE_GEMM(crnn_sgemm_avx512, float, 16, 4, 4, CRNN_T_AVX512)
CRNN_DEFINE_GEMM(crnn_dgemm_avx512, double, 8, 4, 4, CRNN_T_AVX512)
CRNN_DEFINE_GEMM(crnn_sgemm_avx2, float, 8, 4, 2, CRNN_T_AVX2)
CRNN_DEFINE_GEMM(crnn_dgemm_avx2, double, 4, 4, 2, CRNN_T_AVX2)
#endif
CRNN_DEFINE_GEMM(crnn_sgemm_base, float, 4, 4, 2, CRNN_T_BASE)
CRNN_DEFINE_GEMM(crnn_dgemm_base, double, 2, 4, 2, CRNN_T_BASE)

typedef void (*crnn_spack_fn)(const float *, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                              float *);
typedef void (*crnn_dpack_fn)(const double *, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                              double *);
typedef void (*crnn_sgemm_fn)(ptrdiff_t, ptrdiff_t, ptrdiff_t, const float *, ptrdiff_t,
                              ptrdiff_t, const float *, ptrdiff_t, float *, ptrdiff_t, int);
typedef void (*crnn_dgemm_fn)(ptrdiff_t, ptrdiff_t, ptrdiff_t, const double *, ptrdiff_t,
                              ptrdiff_t, const double *, ptrdiff_t, double *, ptrdiff_t, int);

/* The chosen level: set by crnn_gemm_init() at import (or crnn_gemm_select()
 * in tests, between calls), read-only while the kernels run. */
static struct {
    crnn_spack_fn spack; crnn_sgemm_fn sgemm; ptrdiff_t snr;
    crnn_dpack_fn dpack; crnn_dgemm_fn dgemm; ptrdiff_t dnr;
    const char *name; int level;
} crnn_gemm_impl = {crnn_sgemm_base_pack, crnn_sgemm_base, 8,
                    crnn_dgemm_base_pack, crnn_dgemm_base, 4, "sse2", 0};

/* The best level this CPU runs: 0 baseline, 1 AVX2+FMA, 2 AVX-512. */
static int crnn_gemm_best(void)
{
#if CRNN_GEMM_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma"))
        return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return 1;
#endif
    return 0;
}

/* Use level `level` (0..2); returns 0, changing nothing, if the CPU lacks it. */
static int crnn_gemm_select(int level)
{
    if (level < 0 || level > crnn_gemm_best())
        return 0;
#if CRNN_GEMM_X86
    if (level == 2) {
        crnn_gemm_impl.spack = crnn_sgemm_avx512_pack; crnn_gemm_impl.sgemm = crnn_sgemm_avx512;
        crnn_gemm_impl.dpack = crnn_dgemm_avx512_pack; crnn_gemm_impl.dgemm = crnn_dgemm_avx512;
        crnn_gemm_impl.snr = 64; crnn_gemm_impl.dnr = 32; crnn_gemm_impl.name = "avx512";
    } else if (level == 1) {
        crnn_gemm_impl.spack = crnn_sgemm_avx2_pack; crnn_gemm_impl.sgemm = crnn_sgemm_avx2;
        crnn_gemm_impl.dpack = crnn_dgemm_avx2_pack; crnn_gemm_impl.dgemm = crnn_dgemm_avx2;
        crnn_gemm_impl.snr = 16; crnn_gemm_impl.dnr = 8; crnn_gemm_impl.name = "avx2";
    } else
#endif
    {
        crnn_gemm_impl.spack = crnn_sgemm_base_pack; crnn_gemm_impl.sgemm = crnn_sgemm_base;
        crnn_gemm_impl.dpack = crnn_dgemm_base_pack; crnn_gemm_impl.dgemm = crnn_dgemm_base;
        crnn_gemm_impl.snr = 8; crnn_gemm_impl.dnr = 4; crnn_gemm_impl.name = "sse2";
    }
    crnn_gemm_impl.level = level;
    return 1;
}

static void crnn_gemm_init(void)
{
    crnn_gemm_select(crnn_gemm_best());
}

#define crnn_spack(B, k, n, rs, cs, P) crnn_gemm_impl.spack(B, k, n, rs, cs, P)
#define crnn_dpack(B, k, n, rs, cs, P) crnn_gemm_impl.dpack(B, k, n, rs, cs, P)
#define crnn_sgemm(m, n, k, A, rs, cs, P, ps, C, ldc, acc) \
    crnn_gemm_impl.sgemm(m, n, k, A, rs, cs, P, ps, C, ldc, acc)
#define crnn_dgemm(m, n, k, A, rs, cs, P, ps, C, ldc, acc) \
    crnn_gemm_impl.dgemm(m, n, k, A, rs, cs, P, ps, C, ldc, acc)
#define crnn_gemm_snr() (crnn_gemm_impl.snr)
#define crnn_gemm_dnr() (crnn_gemm_impl.dnr)
#define crnn_gemm_name() (crnn_gemm_impl.name)
#define crnn_gemm_level() (crnn_gemm_impl.level)

#else /* no vector extensions, or CRNN_NO_KERNEL: the driver takes its BLAS path */
#define CRNN_HAVE_GEMM 0
#define crnn_gemm_init() ((void)0)
#define crnn_spack(B, k, n, rs, cs, P) ((void)0)
#define crnn_dpack(B, k, n, rs, cs, P) ((void)0)
#define crnn_sgemm(m, n, k, A, rs, cs, P, ps, C, ldc, acc) ((void)0)
#define crnn_dgemm(m, n, k, A, rs, cs, P, ps, C, ldc, acc) ((void)0)
#define crnn_gemm_snr() ((ptrdiff_t)1)
#define crnn_gemm_dnr() ((ptrdiff_t)1)
#define crnn_gemm_name() "blas"
#define crnn_gemm_level() 0
#define crnn_gemm_best() 0
#define crnn_gemm_select(level) ((level) == 0)
#endif

#endif
