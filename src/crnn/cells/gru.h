/* The GRU cell, PyTorch's equations and gate order (r, z, n), with both
 * biases (no include guard: _cells.h includes it once per type and level).
 * a holds the input side x·W_xᵀ, ah the recurrent side h_{t-1}·W_hᵀ.
 *
 *   forward   r = σ(a_r + b_xr + ah_r + b_hr)     z = σ(a_z + b_xz + ah_z + b_hz)
 *             hn = ah_n + b_hn                     n = tanh(a_n + b_xn + r ⊙ hn)
 *             h = (1 − z) ⊙ n + z ⊙ h_prev
 *             saved: (r, z, n) in a, hn in e
 *   backward  dn = dh ⊙ (1 − z) ⊙ (1 − n²)        (∂L/∂ of n's pre-activation, input side)
 *             dA_r = dn ⊙ hn ⊙ r(1 − r)           dA_z = dh ⊙ (h_prev − n) ⊙ z(1 − z)
 *             dA_n = dn ⊙ r                        (recurrent side: ∂L/∂hn)
 *             e ← dn                               dh ← dh ⊙ z (the direct term of ∂L/∂h_{t-1})
 * r and z have one pre-activation, so both sides share dA_r and dA_z.
 */

static CRNN_ATTR void CRNN_FN(crnn_gru_forward)(const CRNN_STEP *s)
{
    const ptrdiff_t H = s->H;
    for (ptrdiff_t r = 0; r < s->m; r++) {
        CRNN_T *CRNN_RESTRICT ar = s->a + r * s->lda;
        CRNN_T *CRNN_RESTRICT az = ar + H;
        CRNN_T *CRNN_RESTRICT an = ar + 2 * H;
        const CRNN_T *CRNN_RESTRICT hr = s->ah + r * s->lda;
        const CRNN_T *CRNN_RESTRICT bx = s->bias;
        const CRNN_T *CRNN_RESTRICT bh = s->bias_h;
        const CRNN_T *CRNN_RESTRICT hp = s->h_prev + r * s->ldh;
        CRNN_T *CRNN_RESTRICT h = s->h + r * s->ldh;
        CRNN_T *CRNN_RESTRICT e = s->e + r * s->ldh;
        for (ptrdiff_t j = s->u0; j < s->u1; j++) {
            CRNN_T rg = CRNN_SIGMOID(ar[j] + bx[j] + hr[j] + bh[j]);
            CRNN_T zg = CRNN_SIGMOID(az[j] + bx[H + j] + hr[H + j] + bh[H + j]);
            CRNN_T hn = hr[2 * H + j] + bh[2 * H + j];
            CRNN_T n = CRNN_TANH(an[j] + bx[2 * H + j] + rg * hn);
            ar[j] = rg;
            az[j] = zg;
            an[j] = n;
            e[j] = hn;
            h[j] = (CRNN_ONE - zg) * n + zg * hp[j];
        }
    }
}

static CRNN_ATTR void CRNN_FN(crnn_gru_backward)(const CRNN_STEP *s)
{
    const ptrdiff_t H = s->H;
    for (ptrdiff_t r = 0; r < s->m; r++) {
        CRNN_T *CRNN_RESTRICT ar = s->a + r * s->lda;
        CRNN_T *CRNN_RESTRICT az = ar + H;
        CRNN_T *CRNN_RESTRICT an = ar + 2 * H;
        const CRNN_T *CRNN_RESTRICT hp = s->h_prev + r * s->ldh;
        CRNN_T *CRNN_RESTRICT e = s->e + r * s->ldh;
        CRNN_T *CRNN_RESTRICT dh = s->dh + r * s->ldh;
        for (ptrdiff_t j = s->u0; j < s->u1; j++) {
            CRNN_T rg = ar[j], zg = az[j], n = an[j], hn = e[j], d = dh[j];
            CRNN_T dn = d * (CRNN_ONE - zg) * (CRNN_ONE - n * n);
            ar[j] = dn * hn * rg * (CRNN_ONE - rg);
            az[j] = d * (hp[j] - n) * zg * (CRNN_ONE - zg);
            an[j] = dn * rg;
            e[j] = dn;
            dh[j] = d * zg;
        }
    }
}
