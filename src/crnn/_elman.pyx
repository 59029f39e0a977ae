"""Elman RNN kernels: the forward pass, the losses and backpropagation through time.

Layout (row-major, time-major, C-contiguous): inputs X (T, B, D) or token ids
(T, B); hidden states Hs (T+1, B, H) with Hs[0] = h0; logits Z (T, B, O).
Batch rows are sorted by sequence length, longest first, so at step t the
first ``batch_sizes[t]`` rows are the ones still running.

Forward::

    Hs[1:] = X·W_xᵀ                           one GEMM over T·B rows (token ids: a gather of W_x's columns)
    for t in 0..T-1, rows r < b_t:
        a = Hs[t+1, r] + Hs[t, r]·W_hᵀ + b_h      one (b_t×H)(H×H) GEMM per step
        Hs[t+1, r] = f(a)                         f = tanh or relu
    rows r >= b_t (padding): Hs[t+1, r] = Hs[t, r]    state carried unchanged
    Z = Hs[1:]·W_yᵀ + b_y                     one GEMM over T·B rows
    y = softmax(Z) or Z, and 0 on padding

Losses, summed over the counted items (t, b) (t < length_b), or over each
sequence's last valid step when there is one target per sequence — which is
Hs[T] itself, since padding carries the state::

    softmax:  l = logsumexp(z) − z[c],     ∂l/∂z = softmax(z) − onehot(c)
    linear:   l = ½‖z − ŷ‖²,                ∂l/∂z = z − ŷ

BPTT, with dZ = ∂L/∂Z (zero on padding) and dh = ∂L/∂h_t::

    dW_y = dZᵀ·Hs[1:]    db_y = Σ dZ          one GEMM
    dHo  = dZ·W_y                              one GEMM (T·B × H)
    dh = 0   (per-sequence targets: dh = dHo, which flows back through the padding unchanged)
    for t in T-1..0, rows r < b_t:
        dA[t, r] = (dh[r] + dHo[t, r]) ⊙ f'(Hs[t+1, r])    tanh' = 1 − h², relu' = [h > 0]
        dh[r] = dA[t, r]·W_h                                 one GEMM per step (skipped at t = 0)
    dA = 0 on padding rows
    dW_h = dAᵀ·Hs[:-1]    dW_x = dAᵀ·X    db_h = Σ dA      one GEMM each

Nothing is allocated inside the time loops; every buffer belongs to one call,
so concurrent calls on the same weights are independent.
"""

from cython cimport floating
from libc.math cimport tanh, exp, log, sqrt
from libc.string cimport memcpy, memset

from crnn cimport _blas

import numpy as np

# Codes shared with model.py (cpdef: visible from Python, constants in C).
cpdef enum:
    TANH = 0
    RELU = 1

cpdef enum:
    SOFTMAX = 0
    LINEAR = 1


cdef extern from "_fastmath.h" nogil:
    float crnn_expf(float x)
    float crnn_tanhf(float x)

cdef extern from "_rows.h" nogil:
    void crnn_tanh_rows(float* a, const float* bias, Py_ssize_t rows, Py_ssize_t H)
    void crnn_bptt_tanh_rows(float* g, float* d, const float* h, Py_ssize_t rows,
                             Py_ssize_t H, int add_g, double* acc, double* sumsq)
    void crnn_exp_shift(float* z, float m, Py_ssize_t n)


# float32 uses the vectorisable versions (within 2 ulp, see _fastmath.h);
# float64 keeps libm, so float64 results are libm's to the last bit.
cdef inline floating _tanh(floating v) noexcept nogil:
    if floating is float:
        return crnn_tanhf(v)
    else:
        return tanh(v)


cdef inline floating _exp(floating v) noexcept nogil:
    if floating is float:
        return crnn_expf(v)
    else:
        return exp(v)


cdef inline void _exp_shift(floating* z, floating m, Py_ssize_t n) noexcept nogil:
    """z = exp(z − m)."""
    cdef Py_ssize_t j
    if floating is float:
        crnn_exp_shift(z, m, n)
    else:
        for j in range(n):
            z[j] = exp(z[j] - m)


cdef inline double _sum(const floating* x, Py_ssize_t n) noexcept nogil:
    """Σ x in double, with four independent accumulators (a serial sum waits on each add)."""
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef Py_ssize_t j = 0
    while j + 4 <= n:
        s0 += x[j]
        s1 += x[j + 1]
        s2 += x[j + 2]
        s3 += x[j + 3]
        j += 4
    while j < n:
        s0 += x[j]
        j += 1
    return (s0 + s1) + (s2 + s3)


cdef inline double _sumsq(const floating* x, Py_ssize_t n) noexcept nogil:
    cdef double s = 0
    cdef Py_ssize_t j
    for j in range(n):
        s += (<double>x[j]) * x[j]
    return s


cdef void _activate(floating* a, const floating* bias, Py_ssize_t rows,
                    Py_ssize_t H, int nonlin) noexcept nogil:
    """a = f(a + bias) for rows×H values, bias broadcast over rows."""
    cdef Py_ssize_t r, j
    cdef floating v
    cdef floating* row
    if nonlin == TANH:
        if floating is float:
            crnn_tanh_rows(a, bias, rows, H)
        else:
            for r in range(rows):
                row = a + r * H
                for j in range(H):
                    row[j] = _tanh(row[j] + bias[j])
    else:
        for r in range(rows):
            row = a + r * H
            for j in range(H):
                v = row[j] + bias[j]
                # NaN stays NaN, as in the forward pass of every other framework.
                row[j] = 0 if v < 0 else v


cdef void _project_tokens(floating* A, const Py_ssize_t* tokens, Py_ssize_t rows,
                          const floating* W_x, Py_ssize_t H, Py_ssize_t D) noexcept nogil:
    """A[r] = W_x[:, tokens[r]]: the product with one-hot inputs, as a gather."""
    cdef Py_ssize_t r, j, c
    cdef floating* row
    for r in range(rows):
        c = tokens[r]
        row = A + r * H
        for j in range(H):
            row[j] = W_x[j * D + c]


cdef void _scatter_tokens(floating* dW_x, const Py_ssize_t* tokens, Py_ssize_t rows,
                          const floating* G, Py_ssize_t H, Py_ssize_t D) noexcept nogil:
    """dW_x[:, tokens[r]] += G[r]: the transpose of the gather above."""
    cdef Py_ssize_t r, j, c
    cdef const floating* row
    memset(dW_x, 0, H * D * sizeof(floating))
    for r in range(rows):
        c = tokens[r]
        row = G + r * H
        for j in range(H):
            dW_x[j * D + c] += row[j]


cdef inline void _step_product(bint backward, Py_ssize_t bt, Py_ssize_t H,
                               const floating* V, const floating* W_h, floating beta,
                               floating* out) noexcept nogil:
    """out = V·W_hᵀ + beta·out (forward) or V·W_h + beta·out (backward), V (bt×H).

    With one row, gemv: gemm would repack all of W_h on every step for a
    single row's worth of work (most of the time at B = 1).
    """
    if bt == 1:
        _blas.gemv(backward, <int>H, <int>H, <floating>1.0, W_h, <int>H, V, beta, out)
    else:
        _blas.gemm(False, not backward, <int>bt, <int>H, <int>H, <floating>1.0, V, <int>H,
                   W_h, <int>H, beta, out, <int>H)


cdef void _recur(floating* Hs, const floating* W_h, const floating* b_h,
                 const Py_ssize_t* batch_sizes, Py_ssize_t T, Py_ssize_t B,
                 Py_ssize_t H, int nonlin) noexcept nogil:
    """The time loop of the forward pass; Hs[1:] holds the input projections on entry."""
    cdef Py_ssize_t t, bt, step = B * H
    cdef floating* prev
    cdef floating* cur
    for t in range(T):
        bt = batch_sizes[t]
        prev = Hs + t * step
        cur = prev + step
        _step_product(False, bt, H, prev, W_h, 1, cur)
        _activate(cur, b_h, bt, H, nonlin)
        if bt < B:
            memcpy(cur + bt * H, prev + bt * H, (B - bt) * H * sizeof(floating))


cdef void _forward_core(const floating* X, const Py_ssize_t* tokens,
                        const floating* W_x, const floating* W_h, const floating* b_h,
                        floating* Hs, const Py_ssize_t* batch_sizes,
                        Py_ssize_t T, Py_ssize_t B, Py_ssize_t D, Py_ssize_t H,
                        int nonlin) noexcept nogil:
    """Hs[1:] from Hs[0] = h0: input projection, then the recurrence."""
    cdef Py_ssize_t TB = T * B
    if tokens != NULL:
        _project_tokens(Hs + B * H, tokens, TB, W_x, H, D)
    else:
        _blas.gemm(False, True, <int>TB, <int>H, <int>D, <floating>1.0, X, <int>D,
                   W_x, <int>D, <floating>0.0, Hs + B * H, <int>H)
    _recur(Hs, W_h, b_h, batch_sizes, T, B, H, nonlin)


cdef inline floating _add_bias_max(floating* z, const floating* b_y,
                                   Py_ssize_t O) noexcept nogil:
    """z += b_y; returns max(z), the shift that keeps softmax's exp from overflowing."""
    cdef Py_ssize_t j
    cdef floating m
    for j in range(O):
        z[j] += b_y[j]
    m = z[0]
    for j in range(1, O):
        if z[j] > m:
            m = z[j]
    return m


cdef void _output_rows(floating* Z, const floating* b_y, Py_ssize_t rows, Py_ssize_t O,
                       int output) noexcept nogil:
    """Z = g(Z + b_y) row by row: softmax (stable) or identity."""
    cdef Py_ssize_t r, j
    cdef floating m, s
    cdef floating* z
    for r in range(rows):
        z = Z + r * O
        m = _add_bias_max(z, b_y, O)
        if output == SOFTMAX:
            _exp_shift(z, m, O)
            s = <floating>(1 / _sum(z, O))
            for j in range(O):
                z[j] *= s


cdef double _softmax_xent(floating* Z, const floating* b_y, const Py_ssize_t* target,
                          const Py_ssize_t* counted, Py_ssize_t nsteps, Py_ssize_t B,
                          Py_ssize_t O, floating scale) noexcept nogil:
    """Loss summed over the counted rows; Z becomes scale·∂loss/∂Z (0 on other rows)."""
    cdef Py_ssize_t s, r, j, c, n
    cdef floating m, zc, e
    cdef double total = 0, ssum
    cdef floating* z
    for s in range(nsteps):
        n = counted[s]
        for r in range(n):
            z = Z + (s * B + r) * O
            m = _add_bias_max(z, b_y, O)
            c = target[s * B + r]
            zc = z[c]
            _exp_shift(z, m, O)
            ssum = _sum(z, O)
            total += log(ssum) + m - zc
            e = <floating>(scale / ssum)
            for j in range(O):
                z[j] *= e
            z[c] -= scale
        if n < B:
            memset(Z + (s * B + n) * O, 0, (B - n) * O * sizeof(floating))
    return total


cdef double _squared_error(floating* Z, const floating* b_y, const floating* target,
                           const Py_ssize_t* counted, Py_ssize_t nsteps, Py_ssize_t B,
                           Py_ssize_t O, floating scale) noexcept nogil:
    """Loss summed over the counted rows; Z becomes scale·∂loss/∂Z (0 on other rows)."""
    cdef Py_ssize_t s, r, j, n
    cdef floating d
    cdef double total = 0
    cdef floating* z
    cdef const floating* y
    for s in range(nsteps):
        n = counted[s]
        for r in range(n):
            z = Z + (s * B + r) * O
            y = target + (s * B + r) * O
            for j in range(O):
                d = z[j] + b_y[j] - y[j]
                total += 0.5 * (<double>d) * d
                z[j] = scale * d
        if n < B:
            memset(Z + (s * B + n) * O, 0, (B - n) * O * sizeof(floating))
    return total


cdef void _column_sums(floating* out, const floating* M, Py_ssize_t rows,
                       Py_ssize_t cols, double* acc) noexcept nogil:
    """out = Σ_r M[r] (accumulated in double: rows may number T·B)."""
    cdef Py_ssize_t r, j
    memset(acc, 0, cols * sizeof(double))
    for r in range(rows):
        for j in range(cols):
            acc[j] += M[r * cols + j]
    for j in range(cols):
        out[j] = <floating>acc[j]


cdef void _bptt(floating* G, floating* dh, const floating* Hs, const floating* W_h,
                const Py_ssize_t* batch_sizes, Py_ssize_t T, Py_ssize_t B,
                Py_ssize_t H, int nonlin, bint per_step, double* db_acc,
                double* norms) noexcept nogil:
    """The time loop of BPTT: G holds dHo (per_step) on entry and dA on exit.

    With ``norms``, norms[t] = ‖∂L/∂h_{t+1}‖ over the running rows: a pass over
    dh that is only made when asked for.
    """
    cdef Py_ssize_t t, r, j, bt, bt_done, step = B * H
    cdef floating v
    cdef floating* g
    cdef floating* d
    cdef const floating* h
    memset(db_acc, 0, H * sizeof(double))
    if norms != NULL:
        memset(norms, 0, T * sizeof(double))
    for t in range(T - 1, -1, -1):
        bt = batch_sizes[t]
        g = G + t * step
        h = Hs + (t + 1) * step
        bt_done = 0
        if floating is float:
            if nonlin == TANH:
                crnn_bptt_tanh_rows(g, dh, h, bt, H, per_step, db_acc,
                                    &norms[t] if norms != NULL else NULL)
                bt_done = bt
        for r in range(bt_done, bt):
            d = dh + r * H
            if per_step:
                for j in range(H):
                    d[j] += g[r * H + j]
            if norms != NULL:
                norms[t] += _sumsq(d, H)
            if nonlin == TANH:
                for j in range(H):
                    v = h[r * H + j]
                    v = d[j] * (1 - v * v)
                    g[r * H + j] = v
                    db_acc[j] += v
            else:
                for j in range(H):
                    v = d[j] if h[r * H + j] > 0 else 0
                    g[r * H + j] = v
                    db_acc[j] += v
        if norms != NULL:
            norms[t] = sqrt(norms[t])
        if bt < B:
            memset(g + bt * H, 0, (B - bt) * H * sizeof(floating))
        if t > 0:
            _step_product(True, bt, H, g, W_h, 0, dh)


def forward(const floating[:, ::1] W_x, const floating[:, ::1] W_h,
            const floating[::1] b_h, const floating[:, ::1] W_y,
            const floating[::1] b_y, const floating[:, ::1] h0,
            const floating[:, :, ::1] X, const Py_ssize_t[:, ::1] tokens,
            const Py_ssize_t[::1] batch_sizes, int nonlin, int output):
    """Run the network over whole sequences.

    Exactly one of ``X`` (T, B, D) and ``tokens`` (T, B) is given, the other
    None. Returns ``y`` (T, B, O), zero on padding, and ``h_last`` (B, H).
    Inputs are trusted: model.py has checked every shape and range.
    """
    cdef Py_ssize_t T = batch_sizes.shape[0], B = h0.shape[0]
    cdef Py_ssize_t H = W_h.shape[0], D = W_x.shape[1], O = W_y.shape[0]
    cdef Py_ssize_t t
    dtype = np.float32 if floating is float else np.float64
    Hs_arr = np.empty((T + 1, B, H), dtype=dtype)
    Y_arr = np.empty((T, B, O), dtype=dtype)
    cdef floating[:, :, ::1] Hs = Hs_arr
    cdef floating[:, :, ::1] Y = Y_arr
    cdef const floating* Xp = NULL
    cdef const Py_ssize_t* tp = NULL
    if tokens is None:
        Xp = &X[0, 0, 0]
    else:
        tp = &tokens[0, 0]
    with nogil:
        memcpy(&Hs[0, 0, 0], &h0[0, 0], B * H * sizeof(floating))
        _forward_core(Xp, tp, &W_x[0, 0], &W_h[0, 0], &b_h[0], &Hs[0, 0, 0],
                      &batch_sizes[0], T, B, D, H, nonlin)
        _blas.gemm(False, True, <int>(T * B), <int>O, <int>H, <floating>1.0,
                   &Hs[1, 0, 0], <int>H, &W_y[0, 0], <int>H, <floating>0.0,
                   &Y[0, 0, 0], <int>O)
        for t in range(T):
            _output_rows(&Y[t, 0, 0], &b_y[0], batch_sizes[t], O, output)
            if batch_sizes[t] < B:
                memset(&Y[t, batch_sizes[t], 0], 0,
                       (B - batch_sizes[t]) * O * sizeof(floating))
    return Y_arr, Hs_arr[T].copy()


def loss_and_grad(const floating[:, ::1] W_x, const floating[:, ::1] W_h,
                  const floating[::1] b_h, const floating[:, ::1] W_y,
                  const floating[::1] b_y, const floating[:, ::1] h0,
                  const floating[:, :, ::1] X, const Py_ssize_t[:, ::1] tokens,
                  const Py_ssize_t[::1] batch_sizes, int nonlin, int output,
                  const Py_ssize_t[::1] classes, const floating[::1] values,
                  bint per_step, double scale, Py_ssize_t score_lo, Py_ssize_t score_hi,
                  double[::1] hidden_norms, bint want_grads):
    """Loss, gradients and final state for whole sequences.

    Targets: ``classes`` (softmax head) or ``values`` (linear head, flattened
    rows of O), in the sorted batch order, the other None. With ``per_step``
    there is a target for every (t, b) (T·B of them); otherwise one for each
    sequence scored, rows ``score_lo <= b < score_hi`` of Hs[T] (so
    ``score_hi − score_lo`` targets). The summed loss is multiplied by
    ``scale`` (1 for "sum", 1/count for "mean").

    ``hidden_norms`` (T,), when given, receives ‖∂L/∂h_t‖ for t = 1..T over
    the rows running at t. Without ``want_grads`` only the loss is computed.

    Returns ``(loss, (dW_x, dW_h, db_h, dW_y, db_y) or None, h_last)``.
    """
    cdef Py_ssize_t T = batch_sizes.shape[0], B = h0.shape[0]
    cdef Py_ssize_t H = W_h.shape[0], D = W_x.shape[1], O = W_y.shape[0]
    cdef Py_ssize_t j, TB = T * B
    cdef Py_ssize_t rows = TB if per_step else score_hi - score_lo
    cdef Py_ssize_t nsteps = T if per_step else 1
    cdef Py_ssize_t stride = B if per_step else rows
    cdef double loss
    dtype = np.float32 if floating is float else np.float64
    Hs_arr = np.empty((T + 1, B, H), dtype=dtype)
    Z_arr = np.empty((max(rows, 1), O), dtype=dtype)
    cdef floating[:, :, ::1] Hs = Hs_arr
    cdef floating[:, ::1] Z = Z_arr
    cdef const floating* Xp = NULL
    cdef const Py_ssize_t* tp = NULL
    cdef const floating* Hout
    cdef const Py_ssize_t* counted
    cdef double* norms = NULL
    cdef floating fscale = <floating>scale
    if tokens is None:
        Xp = &X[0, 0, 0]
    else:
        tp = &tokens[0, 0]
    if hidden_norms is not None:
        norms = &hidden_norms[0]
    with nogil:
        memcpy(&Hs[0, 0, 0], &h0[0, 0], B * H * sizeof(floating))
        _forward_core(Xp, tp, &W_x[0, 0], &W_h[0, 0], &b_h[0], &Hs[0, 0, 0],
                      &batch_sizes[0], T, B, D, H, nonlin)
        # Outputs are needed only where there are targets: every step, or
        # each sequence's last valid state, which padding carried to Hs[T].
        if per_step:
            Hout = &Hs[1, 0, 0]
            counted = &batch_sizes[0]
        else:
            Hout = &Hs[T, score_lo, 0]
            counted = &rows
        _blas.gemm(False, True, <int>rows, <int>O, <int>H, <floating>1.0, Hout, <int>H,
                   &W_y[0, 0], <int>H, <floating>0.0, &Z[0, 0], <int>O)
        if output == SOFTMAX:
            loss = _softmax_xent(&Z[0, 0], &b_y[0], &classes[0] if rows else NULL, counted,
                                 nsteps, stride, O, fscale)
        else:
            loss = _squared_error(&Z[0, 0], &b_y[0], &values[0] if rows else NULL, counted,
                                  nsteps, stride, O, fscale)
    h_last = Hs_arr[T].copy()
    if not want_grads:
        return loss * scale, None, h_last
    grads = _backward(W_x, W_h, W_y, X, tokens, batch_sizes, nonlin, per_step,
                      score_lo, rows, Hs, Z, norms)
    return loss * scale, grads, h_last


cdef tuple _backward(const floating[:, ::1] W_x, const floating[:, ::1] W_h,
                     const floating[:, ::1] W_y, const floating[:, :, ::1] X,
                     const Py_ssize_t[:, ::1] tokens, const Py_ssize_t[::1] batch_sizes,
                     int nonlin, bint per_step, Py_ssize_t score_lo, Py_ssize_t rows,
                     floating[:, :, ::1] Hs, floating[:, ::1] Z, double* norms):
    """BPTT from dZ (held in Z); returns (dW_x, dW_h, db_h, dW_y, db_y)."""
    cdef Py_ssize_t T = batch_sizes.shape[0], B = Hs.shape[1]
    cdef Py_ssize_t H = W_h.shape[0], D = W_x.shape[1], O = W_y.shape[0]
    cdef Py_ssize_t j, TB = T * B
    dtype = np.float32 if floating is float else np.float64
    G_arr = np.empty((T, B, H), dtype=dtype)
    dh_arr = np.zeros((B, H), dtype=dtype)
    acc_arr = np.empty(max(H, O), dtype=np.float64)
    gW_x = np.empty((H, D), dtype=dtype)
    gW_h = np.empty((H, H), dtype=dtype)
    gb_h = np.empty(H, dtype=dtype)
    gW_y = np.empty((O, H), dtype=dtype)
    gb_y = np.empty(O, dtype=dtype)
    cdef floating[:, :, ::1] G = G_arr
    cdef floating[:, ::1] dh = dh_arr
    cdef double[::1] acc = acc_arr
    cdef floating[:, ::1] dW_x = gW_x
    cdef floating[:, ::1] dW_h = gW_h
    cdef floating[::1] db_h = gb_h
    cdef floating[:, ::1] dW_y = gW_y
    cdef floating[::1] db_y = gb_y
    cdef const floating* Hout = &Hs[1, 0, 0] if per_step else &Hs[T, score_lo, 0]
    with nogil:
        _blas.gemm(True, False, <int>O, <int>H, <int>rows, <floating>1.0, &Z[0, 0], <int>O,
                   Hout, <int>H, <floating>0.0, &dW_y[0, 0], <int>H)
        _column_sums(&db_y[0], &Z[0, 0], rows, O, &acc[0])
        _blas.gemm(False, False, <int>rows, <int>H, <int>O, <floating>1.0, &Z[0, 0], <int>O,
                   &W_y[0, 0], <int>H, <floating>0.0,
                   &G[0, 0, 0] if per_step else &dh[score_lo, 0], <int>H)
        _bptt(&G[0, 0, 0], &dh[0, 0], &Hs[0, 0, 0], &W_h[0, 0], &batch_sizes[0],
              T, B, H, nonlin, per_step, &acc[0], norms)
        for j in range(H):
            db_h[j] = <floating>acc[j]
        _blas.gemm(True, False, <int>H, <int>H, <int>TB, <floating>1.0, &G[0, 0, 0], <int>H,
                   &Hs[0, 0, 0], <int>H, <floating>0.0, &dW_h[0, 0], <int>H)
        if tokens is None:
            _blas.gemm(True, False, <int>H, <int>D, <int>TB, <floating>1.0, &G[0, 0, 0],
                       <int>H, &X[0, 0, 0], <int>D, <floating>0.0, &dW_x[0, 0], <int>D)
        else:
            # The transpose of the gather: scatter-add dA rows into W_x's columns.
            _scatter_tokens(&dW_x[0, 0], &tokens[0, 0], TB, &G[0, 0, 0], H, D)
    return (gW_x, gW_h, gb_h, gW_y, gb_y)
