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
 * r and z have one pre-activation, so both sides share dA_r and dA_z. Each
 * row is one call of a function over separate restrict arrays, so that it
 * vectorises (see lstm.h).
 */

CRNN_INLINE CRNN_ATTR void CRNN_FN(crnn_gru_forward_row)(
    CRNN_T *CRNN_RESTRICT ar, CRNN_T *CRNN_RESTRICT az, CRNN_T *CRNN_RESTRICT an,
    const CRNN_T *CRNN_RESTRICT hr, const CRNN_T *CRNN_RESTRICT hz,
    const CRNN_T *CRNN_RESTRICT hh, const CRNN_T *CRNN_RESTRICT bxr,
    const CRNN_T *CRNN_RESTRICT bxz, const CRNN_T *CRNN_RESTRICT bxn,
    const CRNN_T *CRNN_RESTRICT bhr, const CRNN_T *CRNN_RESTRICT bhz,
    const CRNN_T *CRNN_RESTRICT bhn, const CRNN_T *CRNN_RESTRICT hp, CRNN_T *CRNN_RESTRICT h,
    CRNN_T *CRNN_RESTRICT e, ptrdiff_t n)
{
    for (ptrdiff_t j = 0; j < n; j++) {
        CRNN_T rg = CRNN_SIGMOID(ar[j] + bxr[j] + hr[j] + bhr[j]);
        CRNN_T zg = CRNN_SIGMOID(az[j] + bxz[j] + hz[j] + bhz[j]);
        CRNN_T hn = hh[j] + bhn[j];
        CRNN_T ng = CRNN_TANH(an[j] + bxn[j] + rg * hn);
        ar[j] = rg;
        az[j] = zg;
        an[j] = ng;
        e[j] = hn;
        h[j] = (CRNN_ONE - zg) * ng + zg * hp[j];
    }
}

static CRNN_ATTR void CRNN_FN(crnn_gru_forward)(const CRNN_STEP *s)
{
    const ptrdiff_t H = s->H, u = s->u0, n = s->u1 - s->u0;
    const CRNN_T *bx = s->bias + u, *bh = s->bias_h + u;
    for (ptrdiff_t r = 0; r < s->m; r++) {
        CRNN_T *a = s->a + r * s->lda + u;
        const CRNN_T *ah = s->ah + r * s->lda + u;
        ptrdiff_t k = r * s->ldh + u;
        CRNN_FN(crnn_gru_forward_row)(a, a + H, a + 2 * H, ah, ah + H, ah + 2 * H, bx, bx + H,
                                      bx + 2 * H, bh, bh + H, bh + 2 * H, s->h_prev + k,
                                      s->h + k, s->e + k, n);
    }
}

CRNN_INLINE CRNN_ATTR void CRNN_FN(crnn_gru_backward_row)(
    CRNN_T *CRNN_RESTRICT ar, CRNN_T *CRNN_RESTRICT az, CRNN_T *CRNN_RESTRICT an,
    const CRNN_T *CRNN_RESTRICT hp, CRNN_T *CRNN_RESTRICT e, CRNN_T *CRNN_RESTRICT dh,
    ptrdiff_t n)
{
    for (ptrdiff_t j = 0; j < n; j++) {
        CRNN_T rg = ar[j], zg = az[j], ng = an[j], hn = e[j], d = dh[j];
        CRNN_T dn = d * (CRNN_ONE - zg) * (CRNN_ONE - ng * ng);
        ar[j] = dn * hn * rg * (CRNN_ONE - rg);
        az[j] = d * (hp[j] - ng) * zg * (CRNN_ONE - zg);
        an[j] = dn * rg;
        e[j] = dn;
        dh[j] = d * zg;
    }
}

static CRNN_ATTR void CRNN_FN(crnn_gru_backward)(const CRNN_STEP *s)
{
    const ptrdiff_t H = s->H, u = s->u0, n = s->u1 - s->u0;
    for (ptrdiff_t r = 0; r < s->m; r++) {
        CRNN_T *a = s->a + r * s->lda + u;
        ptrdiff_t k = r * s->ldh + u;
        CRNN_FN(crnn_gru_backward_row)(a, a + H, a + 2 * H, s->h_prev + k, s->e + k,
                                       s->dh + k, n);
    }
}
