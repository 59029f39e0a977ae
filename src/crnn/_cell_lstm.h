/* The LSTM cell, PyTorch's equations and gate order (i, f, g, o), (no include
 * guard: _cells.h includes it once per type and level).
 *
 *   forward   i, f, o = σ(a_i + b_i), σ(a_f + b_f), σ(a_o + b_o);  g = tanh(a_g + b_g)
 *             c = f ⊙ c_prev + i ⊙ g;   h = o ⊙ tanh(c)
 *             saved: (i, f, g, o) in a, c in the driver's cell states
 *   backward  dc += dh ⊙ o ⊙ (1 − tanh²c)        (dc arrives from step t+1)
 *             dA_i = dc ⊙ g ⊙ i(1 − i)    dA_f = dc ⊙ c_prev ⊙ f(1 − f)
 *             dA_g = dc ⊙ i ⊙ (1 − g²)    dA_o = dh ⊙ tanh(c) ⊙ o(1 − o)
 *             dc ← dc ⊙ f                         (to step t−1)
 * tanh(c) is recomputed in backward rather than stored. Each row is one call
 * of a function over separate restrict arrays: that is what lets compilers
 * vectorise it (pointers into one row, derived inside a loop, defeat GCC's
 * alias analysis and the loop stays scalar).
 */

CRNN_INLINE CRNN_ATTR void CRNN_FN(crnn_lstm_forward_row)(
    CRNN_T *CRNN_RESTRICT ai, CRNN_T *CRNN_RESTRICT af, CRNN_T *CRNN_RESTRICT ag,
    CRNN_T *CRNN_RESTRICT ao, const CRNN_T *CRNN_RESTRICT bi, const CRNN_T *CRNN_RESTRICT bf,
    const CRNN_T *CRNN_RESTRICT bg, const CRNN_T *CRNN_RESTRICT bo,
    const CRNN_T *CRNN_RESTRICT cp, CRNN_T *CRNN_RESTRICT c, CRNN_T *CRNN_RESTRICT h,
    ptrdiff_t n)
{
    for (ptrdiff_t j = 0; j < n; j++) {
        CRNN_T i = CRNN_SIGMOID(ai[j] + bi[j]);
        CRNN_T f = CRNN_SIGMOID(af[j] + bf[j]);
        CRNN_T g = CRNN_TANH(ag[j] + bg[j]);
        CRNN_T o = CRNN_SIGMOID(ao[j] + bo[j]);
        CRNN_T cj = f * cp[j] + i * g;
        ai[j] = i;
        af[j] = f;
        ag[j] = g;
        ao[j] = o;
        c[j] = cj;
        h[j] = o * CRNN_TANH(cj);
    }
}

static CRNN_ATTR void CRNN_FN(crnn_lstm_forward)(const CRNN_STEP *s)
{
    const ptrdiff_t H = s->H, u = s->u0, n = s->u1 - s->u0;
    const CRNN_T *b = s->bias + u;
    for (ptrdiff_t r = 0; r < s->m; r++) {
        CRNN_T *a = s->a + r * s->lda + u;
        CRNN_FN(crnn_lstm_forward_row)(a, a + H, a + 2 * H, a + 3 * H, b, b + H, b + 2 * H,
                                       b + 3 * H, s->c_prev + r * s->ldh + u,
                                       s->c + r * s->ldh + u, s->h + r * s->ldh + u, n);
    }
}

CRNN_INLINE CRNN_ATTR void CRNN_FN(crnn_lstm_backward_row)(
    CRNN_T *CRNN_RESTRICT ai, CRNN_T *CRNN_RESTRICT af, CRNN_T *CRNN_RESTRICT ag,
    CRNN_T *CRNN_RESTRICT ao, const CRNN_T *CRNN_RESTRICT cp, const CRNN_T *CRNN_RESTRICT c,
    const CRNN_T *CRNN_RESTRICT dh, CRNN_T *CRNN_RESTRICT dc, ptrdiff_t n)
{
    for (ptrdiff_t j = 0; j < n; j++) {
        CRNN_T i = ai[j], f = af[j], g = ag[j], o = ao[j];
        CRNN_T tc = CRNN_TANH(c[j]);
        CRNN_T dcj = dc[j] + dh[j] * o * (CRNN_ONE - tc * tc);
        ai[j] = dcj * g * i * (CRNN_ONE - i);
        af[j] = dcj * cp[j] * f * (CRNN_ONE - f);
        ag[j] = dcj * i * (CRNN_ONE - g * g);
        ao[j] = dh[j] * tc * o * (CRNN_ONE - o);
        dc[j] = dcj * f;
    }
}

static CRNN_ATTR void CRNN_FN(crnn_lstm_backward)(const CRNN_STEP *s)
{
    const ptrdiff_t H = s->H, u = s->u0, n = s->u1 - s->u0;
    for (ptrdiff_t r = 0; r < s->m; r++) {
        CRNN_T *a = s->a + r * s->lda + u;
        ptrdiff_t k = r * s->ldh + u;
        CRNN_FN(crnn_lstm_backward_row)(a, a + H, a + 2 * H, a + 3 * H, s->c_prev + k,
                                        s->c + k, s->dh + k, s->dc + k, n);
    }
}
