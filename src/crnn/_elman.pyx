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
    void crnn_tanh_rows(float* a, const float* bias, Py_ssize_t rows, Py_ssize_t n,
                        Py_ssize_t ld)
    void crnn_bptt_tanh_rows(float* g, float* d, const float* h, Py_ssize_t rows,
                             Py_ssize_t n, Py_ssize_t ld, int add_g, double* acc,
                             double* sumsq)
    void crnn_exp_shift(float* z, float m, Py_ssize_t n)

cdef extern from "_gemm.h" nogil:
    const int CRNN_HAVE_GEMM
    void crnn_gemm_init()
    void crnn_spack(const float* B, Py_ssize_t k, Py_ssize_t n, Py_ssize_t rs, Py_ssize_t cs,
                    float* P)
    void crnn_dpack(const double* B, Py_ssize_t k, Py_ssize_t n, Py_ssize_t rs,
                    Py_ssize_t cs, double* P)
    void crnn_sgemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* A, Py_ssize_t rs,
                    Py_ssize_t cs, const float* P, Py_ssize_t ps, float* C, Py_ssize_t ldc,
                    int accumulate)
    void crnn_dgemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* A, Py_ssize_t rs,
                    Py_ssize_t cs, const double* P, Py_ssize_t ps, double* C, Py_ssize_t ldc,
                    int accumulate)
    Py_ssize_t crnn_gemm_snr()
    Py_ssize_t crnn_gemm_dnr()
    const char* crnn_gemm_name()

cdef extern from "_pool.h" nogil:
    ctypedef void (*crnn_task_fn)(void* ctx, int part, int nparts) noexcept nogil
    void crnn_pool_run(crnn_task_fn fn, void* ctx, int n)
    void crnn_pool_barrier(int nparts)

crnn_gemm_init()


def _gemm_level():
    """The instruction set of the per-step product kernel in use ("blas" without one)."""
    return crnn_gemm_name().decode()


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
                    Py_ssize_t n, Py_ssize_t ld, int nonlin) noexcept nogil:
    """a = f(a + bias) for rows×n values (row stride ld), bias broadcast over rows."""
    cdef Py_ssize_t r, j
    cdef floating v
    cdef floating* row
    if nonlin == TANH:
        if floating is float:
            crnn_tanh_rows(a, bias, rows, n, ld)
        else:
            for r in range(rows):
                row = a + r * ld
                for j in range(n):
                    row[j] = _tanh(row[j] + bias[j])
    else:
        for r in range(rows):
            row = a + r * ld
            for j in range(n):
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


cdef inline Py_ssize_t _nr(bint is_double) noexcept nogil:
    """The panel width of _gemm.h's packed matrices (1 without the kernel)."""
    return crnn_gemm_dnr() if is_double else crnn_gemm_snr()


cdef inline Py_ssize_t _packed_size(Py_ssize_t k, Py_ssize_t n, bint is_double) noexcept nogil:
    cdef Py_ssize_t nr = _nr(is_double)
    return k * ((n + nr - 1) // nr) * nr


cdef _pack(const floating* B, Py_ssize_t k, Py_ssize_t n, Py_ssize_t rs, Py_ssize_t cs):
    """B (k×n, B(p, j) = B[p·rs + j·cs]) packed for _gemm.h, once per call."""
    out = np.empty(max(_packed_size(k, n, floating is double), 1),
                   dtype=np.float64 if floating is double else np.float32)
    cdef floating[::1] P = out
    with nogil:
        _pack_into(B, k, n, rs, cs, &P[0])
    return out


cdef inline void _pack_into(const floating* B, Py_ssize_t k, Py_ssize_t n, Py_ssize_t rs,
                            Py_ssize_t cs, floating* P) noexcept nogil:
    if floating is float:
        crnn_spack(B, k, n, rs, cs, P)
    else:
        crnn_dpack(B, k, n, rs, cs, P)


cdef inline void _kernel(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* A,
                         Py_ssize_t rs, Py_ssize_t cs, const floating* P, Py_ssize_t ps,
                         floating* C, Py_ssize_t ldc, bint accumulate) noexcept nogil:
    """C (m×n) = A·B [+ C] with A(i, p) = A[i·rs + p·cs] and B packed in P."""
    if floating is float:
        crnn_sgemm(m, n, k, A, rs, cs, P, ps, C, ldc, accumulate)
    else:
        crnn_dgemm(m, n, k, A, rs, cs, P, ps, C, ldc, accumulate)


cdef inline void _step_product(bint backward, Py_ssize_t m, Py_ssize_t n, Py_ssize_t H,
                               const floating* V, const floating* W, const floating* P,
                               bint accumulate, floating* out) noexcept nogil:
    """out (m×n, row stride H) = V·W_hᵀ[:, cols] (forward) or V·W_h[:, cols] (backward)
    [+ out], for V (m×H) and a block of n columns starting at c0.

    P is that block of ``_pack``'s panels (offset c0·H): the product runs in
    _gemm.h's kernel on this thread. Without the kernel (then n = H), BLAS
    with W = W_h: gemv for one row (gemm would repack all of W_h for it).
    """
    if CRNN_HAVE_GEMM:
        _kernel(m, n, H, V, H, 1, P, H * _nr(floating is double), out, H, accumulate)
    elif m == 1:
        _blas.gemv(backward, <int>H, <int>H, <floating>1.0, W, <int>H, V,
                   <floating>accumulate, out)
    else:
        _blas.gemm(False, not backward, <int>m, <int>n, <int>H, <floating>1.0, V, <int>H,
                   W, <int>H, <floating>accumulate, out, <int>H)


ctypedef struct _Loop:
    # One time loop (forward or BPTT) of one call, shared by the parts that run it.
    void* Hs                  # (T+1, B, H)
    void* G                   # (T, B, H): BPTT's dHo on entry, dA on exit
    void* dh                  # (B, H)
    const void* W_h
    const void* P             # W_hᵀ (forward) or W_h (BPTT), packed
    const void* b_h
    const Py_ssize_t* batch_sizes
    Py_ssize_t T, B, H, nr    # nr: the panel width of P
    int nonlin
    bint per_step
    bint is_double
    bint by_rows              # split batch rows (no barriers), else column panels
    double* acc               # (nparts, H): Σ dA, one row per part
    double* norms             # (nparts, T): ‖∂L/∂h_t‖² per part, or NULL


cdef int _num_threads = 1


def _set_num_threads(int n):
    global _num_threads
    _num_threads = n


cdef int _plan(_Loop* L) noexcept nogil:
    """How many parts to run L in, and how to split it (sets L.by_rows).

    One part when a step's product is too small to share. Otherwise column
    panels: each thread then reads only its own share of W_h and its rows stay
    whole; batch rows when there are too few panels to go round (and then no
    barrier is needed: rows are independent sequences).
    """
    cdef Py_ssize_t npanels = (L.H + L.nr - 1) // L.nr
    cdef int n = _num_threads
    if not CRNN_HAVE_GEMM or n <= 1 or L.B * L.H * L.H < 65536:
        return 1
    L.by_rows = npanels < n
    if L.by_rows and L.B < 8 * n:
        return 1
    return n


cdef int _block(const _Loop* L, int part, int nparts, Py_ssize_t* r0, Py_ssize_t* r1,
                Py_ssize_t* c0, Py_ssize_t* c1) noexcept nogil:
    """Part ``part``'s rows [r0, r1) and columns [c0, c1); returns the barrier's count."""
    cdef Py_ssize_t q
    r0[0] = 0
    r1[0] = L.B
    c0[0] = 0
    c1[0] = L.H
    if nparts <= 1:
        return 1
    if L.by_rows:
        q = (L.B + 3) // 4      # blocks of 4 rows: the kernel's register block
        r0[0] = min(4 * (q * part // nparts), L.B)
        r1[0] = min(4 * (q * (part + 1) // nparts), L.B)
        return 1
    q = (L.H + L.nr - 1) // L.nr
    c0[0] = min(L.nr * (q * part // nparts), L.H)
    c1[0] = min(L.nr * (q * (part + 1) // nparts), L.H)
    return nparts


cdef void _recur(floating* Hs, const floating* W_h, const floating* P, const floating* b_h,
                 const Py_ssize_t* batch_sizes, Py_ssize_t T, Py_ssize_t B, Py_ssize_t H,
                 int nonlin, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c0, Py_ssize_t c1,
                 int sync) noexcept nogil:
    """The time loop of the forward pass for rows [r0, r1) × columns [c0, c1) of
    the state; Hs[1:] holds the input projections on entry. With ``sync`` > 1
    the other parts hold the other columns: a barrier ends every step.
    """
    cdef Py_ssize_t t, r, bt, n = c1 - c0, step = B * H
    cdef floating* prev
    cdef floating* cur
    for t in range(T):
        bt = min(max(batch_sizes[t], r0), r1)
        prev = Hs + t * step
        cur = prev + step + c0
        if bt > r0 and n > 0:
            _step_product(False, bt - r0, n, H, prev + r0 * H, W_h + c0 * H, P + c0 * H,
                          True, cur + r0 * H)
            _activate(cur + r0 * H, b_h + c0, bt - r0, n, H, nonlin)
        for r in range(bt, r1):
            memcpy(cur + r * H, prev + r * H + c0, n * sizeof(floating))
        crnn_pool_barrier(sync)


cdef void _forward_task(void* ctx, int part, int nparts) noexcept nogil:
    """One part of a forward time loop (a crnn_task_fn)."""
    cdef _Loop* L = <_Loop*>ctx
    cdef Py_ssize_t r0, r1, c0, c1
    cdef int sync = _block(L, part, nparts, &r0, &r1, &c0, &c1)
    if L.is_double:
        _recur[double](<double*>L.Hs, <const double*>L.W_h, <const double*>L.P,
                       <const double*>L.b_h, L.batch_sizes, L.T, L.B, L.H, L.nonlin,
                       r0, r1, c0, c1, sync)
    else:
        _recur[float](<float*>L.Hs, <const float*>L.W_h, <const float*>L.P,
                      <const float*>L.b_h, L.batch_sizes, L.T, L.B, L.H, L.nonlin,
                      r0, r1, c0, c1, sync)


ctypedef struct _Product:
    # C = A·B for row blocks of A split over parts (A(i, p) = A[i·rs + p·cs],
    # B packed in P); or, with ``B`` set, Σ over row blocks of B split over
    # parts: each part packs its rows of B into its ``scratch`` and writes
    # its partial products of the ``nprod`` pairs (A[j], C[j]) to its own
    # C[j] + part·m[j]·n.
    Py_ssize_t n, k
    const void* P
    const void* B             # (k×n) row-major, row stride ldb
    Py_ssize_t ldb
    void* scratch
    int nprod
    Py_ssize_t m[2]
    const void* A[2]
    Py_ssize_t rs[2]
    Py_ssize_t cs[2]
    void* C[2]
    Py_ssize_t ldc
    bint is_double


cdef inline void _span(Py_ssize_t size, Py_ssize_t align, int part, int nparts,
                       Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """Part ``part``'s share [lo, hi) of range(size), cut at multiples of ``align``."""
    cdef Py_ssize_t q = (size + align - 1) // align
    lo[0] = min(align * (q * part // nparts), size)
    hi[0] = min(align * (q * (part + 1) // nparts), size)


cdef void _product_part(const _Product* W, int part, int nparts,
                        floating* unused) noexcept nogil:
    cdef Py_ssize_t lo, hi, nr = _nr(floating is double), j
    cdef floating* S
    if W.B == NULL:
        _span(W.m[0], 4, part, nparts, &lo, &hi)
        if hi > lo:
            _kernel(hi - lo, W.n, W.k, <const floating*>W.A[0] + lo * W.rs[0], W.rs[0],
                    W.cs[0], <const floating*>W.P, W.k * nr,
                    <floating*>W.C[0] + lo * W.ldc, W.ldc, False)
        return
    _span(W.k, 1, part, nparts, &lo, &hi)
    S = <floating*>W.scratch + _packed_size((W.k + nparts - 1) // nparts + 1, W.n,
                                            floating is double) * part
    _pack_into(<const floating*>W.B + lo * W.ldb, hi - lo, W.n, W.ldb, 1, S)
    for j in range(W.nprod):
        _kernel(W.m[j], W.n, hi - lo, <const floating*>W.A[j] + lo * W.cs[j], W.rs[j],
                W.cs[j], S, (hi - lo) * nr, <floating*>W.C[j] + part * W.m[j] * W.n,
                W.ldc, False)


cdef void _product_task(void* ctx, int part, int nparts) noexcept nogil:
    """One part of a _Product (a crnn_task_fn)."""
    cdef const _Product* W = <_Product*>ctx
    if W.is_double:
        _product_part(W, part, nparts, <double*>NULL)
    else:
        _product_part(W, part, nparts, <float*>NULL)


cdef int _threads_for(double flops) noexcept nogil:
    """Parts for a product of ``flops``: one below ~0.1 ms of one core's work."""
    if not CRNN_HAVE_GEMM or _num_threads <= 1 or flops < 2e7:
        return 1
    return _num_threads


cdef void _project(const floating* A, Py_ssize_t m, Py_ssize_t k, const floating* W,
                   bint trans_w, Py_ssize_t n, const floating* P, floating* C,
                   Py_ssize_t ldc) noexcept nogil:
    """C (m×n, row stride ldc) = A (m×k) · (Wᵀ if trans_w else W), W row-major
    (n×k if trans_w else k×n) and packed in P; rows of A split over crnn's threads."""
    cdef _Product job
    if not CRNN_HAVE_GEMM:
        _blas.gemm(False, trans_w, <int>m, <int>n, <int>k, <floating>1.0, A, <int>k, W,
                   <int>(k if trans_w else n), <floating>0.0, C, <int>ldc)
        return
    memset(&job, 0, sizeof(_Product))
    job.n = n
    job.k = k
    job.P = P
    job.m[0] = m
    job.A[0] = A
    job.rs[0] = k
    job.cs[0] = 1
    job.C[0] = C
    job.ldc = ldc
    job.is_double = floating is double
    crnn_pool_run(_product_task, &job, min(_threads_for(2.0 * m * n * k), (m + 3) // 4))


cdef _weight_grads(const floating* Bm, Py_ssize_t k, Py_ssize_t n,
                   const floating* A0, Py_ssize_t m0, Py_ssize_t lda0, floating* out0,
                   const floating* A1, Py_ssize_t m1, Py_ssize_t lda1, floating* out1):
    """out_j (n×m_j) = Bᵀ·A_j for B (k×n) and A_j (k×m_j, row stride lda_j), row-major;
    A1 may be NULL. The k rows (time steps × batch rows) are split over crnn's
    threads, each packing its rows of B once for both products."""
    cdef _Product job
    cdef int nparts = _threads_for(2.0 * k * n * (m0 + (m1 if A1 != NULL else 0)))
    cdef Py_ssize_t i, c, part, j
    cdef double v
    cdef const floating* src
    dtype = np.float64 if floating is double else np.float32
    if not CRNN_HAVE_GEMM:
        with nogil:
            _blas.gemm(True, False, <int>n, <int>m0, <int>k, <floating>1.0, Bm, <int>n, A0,
                       <int>lda0, <floating>0.0, out0, <int>m0)
            if A1 != NULL:
                _blas.gemm(True, False, <int>n, <int>m1, <int>k, <floating>1.0, Bm, <int>n,
                           A1, <int>lda1, <floating>0.0, out1, <int>m1)
        return
    scratch_arr = np.empty(max(_packed_size(k + 2 * nparts, n, floating is double), 1),
                           dtype=dtype)
    # Zeros: a part the pool does not run (it may run fewer) adds nothing.
    parts0_arr = np.zeros(nparts * m0 * n, dtype=dtype)
    parts1_arr = np.zeros(nparts * m1 * n if A1 != NULL else 1, dtype=dtype)
    cdef floating[::1] scratch = scratch_arr
    cdef floating[::1] parts0 = parts0_arr
    cdef floating[::1] parts1 = parts1_arr
    memset(&job, 0, sizeof(_Product))
    job.n = n
    job.k = k
    job.B = Bm
    job.ldb = n
    job.scratch = &scratch[0]
    job.nprod = 2 if A1 != NULL else 1
    job.m[0] = m0
    job.A[0] = A0
    job.rs[0] = 1
    job.cs[0] = lda0
    job.C[0] = &parts0[0]
    job.m[1] = m1
    job.A[1] = A1
    job.rs[1] = 1
    job.cs[1] = lda1
    job.C[1] = &parts1[0]
    job.ldc = n
    job.is_double = floating is double
    with nogil:
        crnn_pool_run(_product_task, &job, nparts)
        # Each part holds (A_jᵀ·B) over its rows, m_j×n: add them up, transposed.
        for j in range(job.nprod):
            src = &parts0[0] if j == 0 else &parts1[0]
            for c in range(n):
                for i in range(job.m[j]):
                    v = 0
                    for part in range(nparts):
                        v += src[(part * job.m[j] + i) * n + c]
                    (out0 if j == 0 else out1)[c * job.m[j] + i] = <floating>v


cdef void _loop_set(_Loop* L, floating* Hs, const floating* W_h, const floating* P,
                    const floating* b_h, const Py_ssize_t* batch_sizes, Py_ssize_t T,
                    Py_ssize_t B, Py_ssize_t H, int nonlin) noexcept nogil:
    memset(L, 0, sizeof(_Loop))
    L.Hs = Hs
    L.W_h = W_h
    L.P = P
    L.b_h = b_h
    L.batch_sizes = batch_sizes
    L.T = T
    L.B = B
    L.H = H
    L.nr = crnn_gemm_snr() if floating is float else crnn_gemm_dnr()
    L.nonlin = nonlin
    L.is_double = floating is double


cdef void _forward_core(const floating* X, const Py_ssize_t* tokens, const floating* W_x,
                        const floating* Px, _Loop* L, Py_ssize_t D) noexcept nogil:
    """Hs[1:] from Hs[0] = h0: input projection, then the recurrence (L's loop)."""
    cdef Py_ssize_t H = L.H, TB = L.T * L.B
    cdef floating* Hs1 = <floating*>L.Hs + L.B * H
    if tokens != NULL:
        _project_tokens(Hs1, tokens, TB, W_x, H, D)
    else:
        _project(X, TB, D, W_x, True, H, Px, Hs1, H)
    crnn_pool_run(_forward_task, L, _plan(L))


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
                const floating* P, const Py_ssize_t* batch_sizes, Py_ssize_t T,
                Py_ssize_t B, Py_ssize_t H, int nonlin, bint per_step, Py_ssize_t r0,
                Py_ssize_t r1, Py_ssize_t c0, Py_ssize_t c1, int sync, double* db_acc,
                double* norms) noexcept nogil:
    """The time loop of BPTT for rows [r0, r1) × columns [c0, c1): G holds dHo
    (per_step) on entry and dA on exit; db_acc[j] += Σ dA[..., j] over the
    block. With ``norms``, norms[t] += ‖∂L/∂h_{t+1}‖² over the block's running
    rows: a pass over dh made only when asked for. With ``sync`` > 1 the other
    parts hold the other columns: a barrier precedes each step's product.
    """
    cdef Py_ssize_t t, r, j, bt, bt_done, n = c1 - c0, step = B * H
    cdef floating v
    cdef floating* g
    cdef floating* d
    cdef const floating* h
    for t in range(T - 1, -1, -1):
        bt = min(max(batch_sizes[t], r0), r1)
        g = G + t * step + c0
        h = Hs + (t + 1) * step + c0
        bt_done = r0
        if floating is float:
            if nonlin == TANH and n > 0:
                crnn_bptt_tanh_rows(g + r0 * H, dh + r0 * H + c0, h + r0 * H, bt - r0, n, H,
                                    per_step, db_acc + c0, &norms[t] if norms != NULL else NULL)
                bt_done = bt
        for r in range(bt_done, bt):
            d = dh + r * H + c0
            if per_step:
                for j in range(n):
                    d[j] += g[r * H + j]
            if norms != NULL:
                norms[t] += _sumsq(d, n)
            if nonlin == TANH:
                for j in range(n):
                    v = h[r * H + j]
                    v = d[j] * (1 - v * v)
                    g[r * H + j] = v
                    db_acc[c0 + j] += v
            else:
                for j in range(n):
                    v = d[j] if h[r * H + j] > 0 else 0
                    g[r * H + j] = v
                    db_acc[c0 + j] += v
        for r in range(bt, r1):
            memset(g + r * H, 0, n * sizeof(floating))
        if t > 0:
            crnn_pool_barrier(sync)
            if bt > r0 and n > 0:
                _step_product(True, bt - r0, n, H, G + t * step + r0 * H, W_h + c0,
                              P + c0 * H, False, dh + r0 * H + c0)


cdef void _bptt_task(void* ctx, int part, int nparts) noexcept nogil:
    """One part of a BPTT time loop (a crnn_task_fn); its sums go to row ``part``."""
    cdef _Loop* L = <_Loop*>ctx
    cdef Py_ssize_t r0, r1, c0, c1
    cdef int sync = _block(L, part, nparts, &r0, &r1, &c0, &c1)
    cdef double* acc = L.acc + part * L.H
    cdef double* norms = L.norms + part * L.T if L.norms != NULL else NULL
    if L.is_double:
        _bptt[double](<double*>L.G, <double*>L.dh, <const double*>L.Hs,
                      <const double*>L.W_h, <const double*>L.P, L.batch_sizes, L.T, L.B,
                      L.H, L.nonlin, L.per_step, r0, r1, c0, c1, sync, acc, norms)
    else:
        _bptt[float](<float*>L.G, <float*>L.dh, <const float*>L.Hs,
                     <const float*>L.W_h, <const float*>L.P, L.batch_sizes, L.T, L.B,
                     L.H, L.nonlin, L.per_step, r0, r1, c0, c1, sync, acc, norms)


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
    # W_hᵀ, W_xᵀ (not for token ids) and W_yᵀ packed for the kernels' products
    cdef floating[::1] Pf = _pack(&W_h[0, 0], H, H, 1, H)
    cdef floating[::1] Px = _pack(&W_x[0, 0], D if tokens is None else 0, H, 1, D)
    cdef floating[::1] Py = _pack(&W_y[0, 0], H, O, 1, H)
    cdef floating[:, :, ::1] Hs = Hs_arr
    cdef floating[:, :, ::1] Y = Y_arr
    cdef _Loop L
    cdef const floating* Xp = NULL
    cdef const Py_ssize_t* tp = NULL
    if tokens is None:
        Xp = &X[0, 0, 0]
    else:
        tp = &tokens[0, 0]
    with nogil:
        memcpy(&Hs[0, 0, 0], &h0[0, 0], B * H * sizeof(floating))
        _loop_set(&L, &Hs[0, 0, 0], &W_h[0, 0], &Pf[0], &b_h[0], &batch_sizes[0], T, B, H,
                  nonlin)
        _forward_core(Xp, tp, &W_x[0, 0], &Px[0], &L, D)
        _project(&Hs[1, 0, 0], T * B, H, &W_y[0, 0], True, O, &Py[0], &Y[0, 0, 0], O)
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
    # W_hᵀ, W_xᵀ (not for token ids) and W_yᵀ packed for the kernels' products
    cdef floating[::1] Pf = _pack(&W_h[0, 0], H, H, 1, H)
    cdef floating[::1] Px = _pack(&W_x[0, 0], D if tokens is None else 0, H, 1, D)
    cdef floating[::1] Py = _pack(&W_y[0, 0], H, O, 1, H)
    cdef floating[:, :, ::1] Hs = Hs_arr
    cdef floating[:, ::1] Z = Z_arr
    cdef const floating* Xp = NULL
    cdef const Py_ssize_t* tp = NULL
    cdef const floating* Hout
    cdef const Py_ssize_t* counted
    cdef double* norms = NULL
    cdef floating fscale = <floating>scale
    cdef _Loop L
    if tokens is None:
        Xp = &X[0, 0, 0]
    else:
        tp = &tokens[0, 0]
    if hidden_norms is not None:
        norms = &hidden_norms[0]
    with nogil:
        memcpy(&Hs[0, 0, 0], &h0[0, 0], B * H * sizeof(floating))
        _loop_set(&L, &Hs[0, 0, 0], &W_h[0, 0], &Pf[0], &b_h[0], &batch_sizes[0], T, B, H,
                  nonlin)
        _forward_core(Xp, tp, &W_x[0, 0], &Px[0], &L, D)
        # Outputs are needed only where there are targets: every step, or
        # each sequence's last valid state, which padding carried to Hs[T].
        if per_step:
            Hout = &Hs[1, 0, 0]
            counted = &batch_sizes[0]
        else:
            Hout = &Hs[T, score_lo, 0]
            counted = &rows
        _project(Hout, rows, H, &W_y[0, 0], True, O, &Py[0], &Z[0, 0], O)
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
    cdef Py_ssize_t j, t, part, TB = T * B
    cdef int nparts
    cdef double v
    cdef _Loop L
    dtype = np.float32 if floating is float else np.float64
    G_arr = np.empty((T, B, H), dtype=dtype)
    dh_arr = np.zeros((B, H), dtype=dtype)
    cdef floating[::1] Pb = _pack(&W_h[0, 0], H, H, H, 1)
    cdef floating[::1] Pyb = _pack(&W_y[0, 0], O, H, H, 1)
    _loop_set(&L, &Hs[0, 0, 0], &W_h[0, 0], &Pb[0], <floating*>NULL, &batch_sizes[0], T, B,
              H, nonlin)
    nparts = _plan(&L)
    # Σ dA and ‖∂L/∂h_t‖² of each part, added up below (the parts run in parallel).
    acc_arr = np.zeros((nparts, H), dtype=np.float64)
    norms_arr = np.zeros((nparts, T if norms != NULL else 1), dtype=np.float64)
    colsum_arr = np.empty(O, dtype=np.float64)
    cdef double[:, ::1] acc = acc_arr
    cdef double[::1] colsum = colsum_arr
    cdef double[:, ::1] part_norms = norms_arr
    gW_x = np.empty((H, D), dtype=dtype)
    gW_h = np.empty((H, H), dtype=dtype)
    gb_h = np.empty(H, dtype=dtype)
    gW_y = np.empty((O, H), dtype=dtype)
    gb_y = np.empty(O, dtype=dtype)
    cdef floating[:, :, ::1] G = G_arr
    cdef floating[:, ::1] dh = dh_arr
    cdef floating[:, ::1] dW_x = gW_x
    cdef floating[:, ::1] dW_h = gW_h
    cdef floating[::1] db_h = gb_h
    cdef floating[:, ::1] dW_y = gW_y
    cdef floating[::1] db_y = gb_y
    cdef const floating* Hout = &Hs[1, 0, 0] if per_step else &Hs[T, score_lo, 0]
    with nogil:
        _column_sums(&db_y[0], &Z[0, 0], rows, O, &colsum[0])
        _project(&Z[0, 0], rows, O, &W_y[0, 0], False, H, &Pyb[0],
                 &G[0, 0, 0] if per_step else &dh[score_lo, 0], H)
        L.G = &G[0, 0, 0]
        L.dh = &dh[0, 0]
        L.per_step = per_step
        L.acc = &acc[0, 0]
        L.norms = &part_norms[0, 0] if norms != NULL else NULL
        crnn_pool_run(_bptt_task, &L, nparts)
        for j in range(H):
            v = 0
            for part in range(nparts):
                v += acc[part, j]
            db_h[j] = <floating>v
        if norms != NULL:
            for t in range(T):
                v = 0
                for part in range(nparts):
                    v += part_norms[part, t]
                norms[t] = sqrt(v)
    _weight_grads(&Z[0, 0], rows, O, Hout, H, H, &dW_y[0, 0], <floating*>NULL, 0, 0,
                  <floating*>NULL)
    if tokens is None:
        _weight_grads(&G[0, 0, 0], TB, H, &Hs[0, 0, 0], H, H, &dW_h[0, 0], &X[0, 0, 0], D, D,
                      &dW_x[0, 0])
    else:
        _weight_grads(&G[0, 0, 0], TB, H, &Hs[0, 0, 0], H, H, &dW_h[0, 0], <floating*>NULL,
                      0, 0, <floating*>NULL)
        with nogil:
            # The transpose of the gather: scatter-add dA rows into W_x's columns.
            _scatter_tokens(&dW_x[0, 0], &tokens[0, 0], TB, &G[0, 0, 0], H, D)
    return (gW_x, gW_h, gb_h, gW_y, gb_y)
