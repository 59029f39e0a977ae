/* The Elman cell (no include guard: _cells.h includes it once per type and level).
 *
 *   forward   h = f(a + b)                       f = tanh or relu
 *   backward  dA = dh ⊙ f'(a + b)                tanh' = 1 − h², relu' = [h > 0]
 *
 * Nothing is saved beside h itself (the driver keeps every h_t).
 */

static CRNN_ATTR void CRNN_FN(crnn_tanh_forward)(const CRNN_STEP *s)
{
    for (ptrdiff_t r = 0; r < s->m; r++) {
        const CRNN_T *CRNN_RESTRICT a = s->a + r * s->lda;
        CRNN_T *CRNN_RESTRICT h = s->h + r * s->ldh;
        const CRNN_T *CRNN_RESTRICT b = s->bias;
        for (ptrdiff_t j = s->u0; j < s->u1; j++)
            h[j] = CRNN_TANH(a[j] + b[j]);
    }
}

static CRNN_ATTR void CRNN_FN(crnn_tanh_backward)(const CRNN_STEP *s)
{
    for (ptrdiff_t r = 0; r < s->m; r++) {
        CRNN_T *CRNN_RESTRICT a = s->a + r * s->lda;
        const CRNN_T *CRNN_RESTRICT h = s->h + r * s->ldh;
        const CRNN_T *CRNN_RESTRICT dh = s->dh + r * s->ldh;
        for (ptrdiff_t j = s->u0; j < s->u1; j++)
            a[j] = dh[j] * (CRNN_ONE - h[j] * h[j]);
    }
}

static CRNN_ATTR void CRNN_FN(crnn_relu_forward)(const CRNN_STEP *s)
{
    for (ptrdiff_t r = 0; r < s->m; r++) {
        const CRNN_T *CRNN_RESTRICT a = s->a + r * s->lda;
        CRNN_T *CRNN_RESTRICT h = s->h + r * s->ldh;
        const CRNN_T *CRNN_RESTRICT b = s->bias;
        for (ptrdiff_t j = s->u0; j < s->u1; j++) {
            CRNN_T v = a[j] + b[j];
            h[j] = v < 0 ? 0 : v;           /* NaN stays NaN */
        }
    }
}

static CRNN_ATTR void CRNN_FN(crnn_relu_backward)(const CRNN_STEP *s)
{
    for (ptrdiff_t r = 0; r < s->m; r++) {
        CRNN_T *CRNN_RESTRICT a = s->a + r * s->lda;
        const CRNN_T *CRNN_RESTRICT h = s->h + r * s->ldh;
        const CRNN_T *CRNN_RESTRICT dh = s->dh + r * s->ldh;
        for (ptrdiff_t j = s->u0; j < s->u1; j++)
            a[j] = h[j] > 0 ? dh[j] : 0;
    }
}
