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
 * tanh(c) is recomputed in backward rather than stored.
 */

static CRNN_ATTR void CRNN_FN(crnn_lstm_forward)(const CRNN_STEP *s)
{
    const ptrdiff_t H = s->H;
    for (ptrdiff_t r = 0; r < s->m; r++) {
        CRNN_T *CRNN_RESTRICT ai = s->a + r * s->lda;
        CRNN_T *CRNN_RESTRICT af = ai + H;
        CRNN_T *CRNN_RESTRICT ag = ai + 2 * H;
        CRNN_T *CRNN_RESTRICT ao = ai + 3 * H;
        const CRNN_T *CRNN_RESTRICT bi = s->bias;
        const CRNN_T *CRNN_RESTRICT cp = s->c_prev + r * s->ldh;
        CRNN_T *CRNN_RESTRICT c = s->c + r * s->ldh;
        CRNN_T *CRNN_RESTRICT h = s->h + r * s->ldh;
        for (ptrdiff_t j = s->u0; j < s->u1; j++) {
            CRNN_T i = CRNN_SIGMOID(ai[j] + bi[j]);
            CRNN_T f = CRNN_SIGMOID(af[j] + bi[H + j]);
            CRNN_T g = CRNN_TANH(ag[j] + bi[2 * H + j]);
            CRNN_T o = CRNN_SIGMOID(ao[j] + bi[3 * H + j]);
            CRNN_T cj = f * cp[j] + i * g;
            ai[j] = i;
            af[j] = f;
            ag[j] = g;
            ao[j] = o;
            c[j] = cj;
            h[j] = o * CRNN_TANH(cj);
        }
    }
}

static CRNN_ATTR void CRNN_FN(crnn_lstm_backward)(const CRNN_STEP *s)
{
    const ptrdiff_t H = s->H;
    for (ptrdiff_t r = 0; r < s->m; r++) {
        CRNN_T *CRNN_RESTRICT ai = s->a + r * s->lda;
        CRNN_T *CRNN_RESTRICT af = ai + H;
        CRNN_T *CRNN_RESTRICT ag = ai + 2 * H;
        CRNN_T *CRNN_RESTRICT ao = ai + 3 * H;
        const CRNN_T *CRNN_RESTRICT cp = s->c_prev + r * s->ldh;
        const CRNN_T *CRNN_RESTRICT c = s->c + r * s->ldh;
        const CRNN_T *CRNN_RESTRICT dh = s->dh + r * s->ldh;
        CRNN_T *CRNN_RESTRICT dc = s->dc + r * s->ldh;
        for (ptrdiff_t j = s->u0; j < s->u1; j++) {
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
}
