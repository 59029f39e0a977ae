/* The recurrent cells: each one's pointwise maths, forward and derivative,
 * and the table the time-loop driver reads them from.
 *
 * A cell sees one time step of a block of rows (sequences still running)
 * and of hidden units [u0, u1), for every one of its G gate blocks; the
 * driver has already added the recurrent product W_h·h_{t-1} to the gate
 * pre-activations (or, for a cell with `sep_h`, left it in `ah`). Each cell
 * file (_cell_NAME.h) is written once in terms of CRNN_T, CRNN_EXP,
 * CRNN_TANH, CRNN_SIGMOID and CRNN_FN(), and is included here once per type
 * and, for float32, once per x86-64 ISA level, so that the same source
 * becomes SSE2, AVX2 and AVX-512 loops (no FMA: every level rounds alike).
 * The maths of each cell is in its file.
 *
 * Adding a cell: write _cell_NAME.h, include it below (three times: float
 * per level, and double) and add a row to crnn_cells[]; the public class
 * that uses it is a few lines in model.py.
 */
#ifndef CRNN_CELLS_H
#define CRNN_CELLS_H

#include <stddef.h>
#include <math.h>
#include "_fastmath.h"

/* One step of one block, as the cells see it. Rows have strides lda (gate
 * arrays, G·H wide) and ldh (states, H wide); unit j of gate g is column
 * g·H + j. Forward reads a (pre-activations, without bias), ah (sep_h
 * cells: the recurrent product), bias (b_h; for a sep_h cell b_x), bias_h
 * (sep_h cells: b_h), h_prev, c_prev; writes h, c, and what backward needs
 * into a and e. Backward reads those and dh = ∂L/∂h_t, dc = ∂L/∂c_t (carried
 * from t+1); writes a = ∂L/∂(pre-activations), e (cells with x_split < G:
 * the input side's gradient of gates >= x_split), dc = ∂L/∂c_{t-1} through
 * the cell, and, for dh_direct cells, dh = the part of ∂L/∂h_{t-1} that
 * does not go through W_h. */
#define CRNN_DEFINE_STEP(T, NAME)                                                       \
typedef struct {                                                                        \
    T *a; const T *ah; const T *bias; const T *bias_h;                                  \
    const T *h_prev; T *h; const T *c_prev; T *c; T *dh; T *dc; T *e;                   \
    ptrdiff_t m, H, u0, u1, lda, ldh;                                                   \
} NAME;                                                                                 \
typedef void (*NAME##_fn)(const NAME *);
CRNN_DEFINE_STEP(float, crnn_step_f)
CRNN_DEFINE_STEP(double, crnn_step_d)

#define CRNN_CAT_(a, b) a##b
#define CRNN_CAT(a, b) CRNN_CAT_(a, b)

/* Vector ISA levels of the float32 cells (and of _recurrent.h's kernel). */
#define CRNN_LEVEL_BASE 0
#define CRNN_LEVEL_AVX2 1
#define CRNN_LEVEL_AVX512 2
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__clang__) || __GNUC__ >= 8)
#define CRNN_HAVE_X86_LEVELS 1
#else
#define CRNN_HAVE_X86_LEVELS 0
#endif

#define CRNN_T float
#define CRNN_STEP crnn_step_f
#define CRNN_EXP crnn_expf
#define CRNN_TANH crnn_tanhf
#define CRNN_SIGMOID crnn_sigmoidf
#define CRNN_ONE 1.0f
#define CRNN_ATTR
#define CRNN_FN(name) CRNN_CAT(name, _f_base)
#include "_cell_elman.h"
#include "_cell_lstm.h"
#include "_cell_gru.h"
#undef CRNN_ATTR
#undef CRNN_FN
#if CRNN_HAVE_X86_LEVELS
#define CRNN_ATTR __attribute__((target("avx2")))
#define CRNN_FN(name) CRNN_CAT(name, _f_avx2)
#include "_cell_elman.h"
#include "_cell_lstm.h"
#include "_cell_gru.h"
#undef CRNN_ATTR
#undef CRNN_FN
#define CRNN_ATTR __attribute__((target("avx512f")))
#define CRNN_FN(name) CRNN_CAT(name, _f_avx512)
#include "_cell_elman.h"
#include "_cell_lstm.h"
#include "_cell_gru.h"
#undef CRNN_ATTR
#undef CRNN_FN
#endif
#undef CRNN_T
#undef CRNN_STEP
#undef CRNN_EXP
#undef CRNN_TANH
#undef CRNN_SIGMOID
#undef CRNN_ONE

#define CRNN_T double
#define CRNN_STEP crnn_step_d
#define CRNN_EXP exp
#define CRNN_TANH tanh
#define CRNN_SIGMOID crnn_sigmoid
#define CRNN_ONE 1.0
#define CRNN_ATTR
#define CRNN_FN(name) CRNN_CAT(name, _d)
#include "_cell_elman.h"
#include "_cell_lstm.h"
#include "_cell_gru.h"
#undef CRNN_ATTR
#undef CRNN_FN
#undef CRNN_T
#undef CRNN_STEP
#undef CRNN_EXP
#undef CRNN_TANH
#undef CRNN_SIGMOID
#undef CRNN_ONE

/* The table. gates: G. has_c: a second carried state (c). sep_h: the
 * recurrent product is not added onto the input projection but passed in
 * `ah` (and its bias apart). extra: columns per unit of the saved array e.
 * x_split: gates >= x_split have their input-side gradient in e (dA holds
 * the recurrent side's). dh_direct: backward writes a direct term of
 * ∂L/∂h_{t-1} into dh, onto which the recurrent product is added. */
typedef struct {
    const char *name;
    int gates, has_c, sep_h, extra, x_split, dh_direct;
    crnn_step_f_fn forward_f[3], backward_f[3];
    crnn_step_d_fn forward_d, backward_d;
} crnn_cell;

#if CRNN_HAVE_X86_LEVELS
#define CRNN_LEVELS_F(name) {name##_f_base, name##_f_avx2, name##_f_avx512}
#else
#define CRNN_LEVELS_F(name) {name##_f_base, name##_f_base, name##_f_base}
#endif
#define CRNN_CELL_ROW(label, G, C, S, E, X, D, name)                                      \
    {label, G, C, S, E, X, D, CRNN_LEVELS_F(name##_forward), CRNN_LEVELS_F(name##_backward), \
     name##_forward_d, name##_backward_d}

enum { CRNN_CELL_TANH = 0, CRNN_CELL_RELU = 1, CRNN_CELL_LSTM = 2, CRNN_CELL_GRU = 3,
       CRNN_NCELLS = 4 };

/* The best level of the float32 cells this CPU runs. */
static int crnn_cells_best(void)
{
#if CRNN_HAVE_X86_LEVELS && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return CRNN_LEVEL_AVX512;
    if (__builtin_cpu_supports("avx2"))
        return CRNN_LEVEL_AVX2;
#endif
    return CRNN_LEVEL_BASE;
}

static const crnn_cell crnn_cells[CRNN_NCELLS] = {
    /*             name        G  c  sep extra x_split direct */
    CRNN_CELL_ROW("rnn_tanh",  1, 0, 0,  0,    1,      0,     crnn_tanh),
    CRNN_CELL_ROW("rnn_relu",  1, 0, 0,  0,    1,      0,     crnn_relu),
    CRNN_CELL_ROW("lstm",      4, 1, 0,  0,    4,      0,     crnn_lstm),
    CRNN_CELL_ROW("gru",       3, 0, 1,  1,    2,      1,     crnn_gru),
};

#endif
