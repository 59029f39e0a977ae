"""The recurrent engine: one time-loop driver for every cell, layer and direction.

Layout (row-major, time-major, C-contiguous): inputs X (T, B, D) or token ids
(T, B); per layer and direction, gate pre-activations A (T·B, G·H) and
hidden states Hs (T+1, B, H) with Hs[0] = h0; the head's logits Z (T·B, O).
Batch rows are sorted by length, longest first, so at step t the first
``bs[t]`` rows are the sequences still running; padding rows carry their
state unchanged and add nothing to the loss or the gradients.

Forward, per layer l and direction d::

    A = X_l·W_xᵀ                   one GEMM over T·B rows (token ids: a gather of W_x's columns)
    for t in 0..T-1:               the only sequential part
        A[t] += Hs[t]·W_hᵀ         the recurrent product, W_h packed once for all T steps
                                   (a sep_h cell keeps it apart, in AH)
        Hs[t+1], state = cell_forward(A[t], Hs[t], state)       pointwise (_cells.h)
    X_{l+1} = [Hs_fwd[1:] ; Hs_rev[1:]] ⊙ dropout mask           between layers only

The reverse direction reads each sequence's own valid steps from its last
back to its first: its input rows are gathered once into that order (``rev``,
an involution on rows t·B + b: (t, b) <-> (len_b − 1 − t, b) for t < len_b),
its loop is the forward loop, and its outputs are put back in time order.

Head (_heads.pxi) over the top layer's outputs, one target per step or per
sequence (the final states, PyTorch's h_n of the top layer)::

    Z = Y·W_yᵀ + b_y      loss and dZ = ∂L/∂Z fused, stable (softmax-CE or ½‖z − ŷ‖²)
    dW_y = dZᵀ·Y   db_y = Σ dZ   dY = dZ·W_y

Backward (BPTT), per layer top down, per direction::

    for t in T-1..0:
        dh[t] += dY[t]                                  upstream, rows still running
        dA[t], dc = cell_backward(dh, stored values)    pointwise (_cells.h)
        dh = dA[t]·W_h (+ the cell's direct term)       the recurrent product
    dW_h = dAᵀ·Hs[:-1]   dW_x = dAᵀ·X_l   db = Σ dA   dX_l = dA·W_x     BLAS, after the loop
    dY_{l-1} = dX_l ⊙ dropout mask

Every all-steps product goes to scipy's BLAS (``_blas.pxd``), split into
blocks over crnn's threads, each block one single-threaded BLAS call
(_blasthreads.h says why); the per-step product runs in _recurrent.h's
kernel (or BLAS, without it). Nothing is allocated inside a call: every
buffer lives in a workspace reused from call to call (_workspace.pxi).
"""

cimport cython
from cython cimport floating
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE
from libc.math cimport exp, log, sqrt
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

from crnn cimport _blas

import numpy as np

cdef extern from "_cells.h" nogil:
    ctypedef struct crnn_step_f:
        float* a
        const float* ah
        const float* bias
        const float* bias_h
        const float* h_prev
        float* h
        const float* c_prev
        float* c
        float* dh
        float* dc
        float* e
        Py_ssize_t m, H, u0, u1, lda, ldh
    ctypedef struct crnn_step_d:
        double* a
        const double* ah
        const double* bias
        const double* bias_h
        const double* h_prev
        double* h
        const double* c_prev
        double* c
        double* dh
        double* dc
        double* e
        Py_ssize_t m, H, u0, u1, lda, ldh
    ctypedef void (*crnn_step_f_fn)(const crnn_step_f*) noexcept nogil
    ctypedef void (*crnn_step_d_fn)(const crnn_step_d*) noexcept nogil
    ctypedef struct crnn_cell:
        const char* name
        int gates, has_c, sep_h, extra, x_split, dh_direct
        crnn_step_f_fn forward_f[3]
        crnn_step_f_fn backward_f[3]
        crnn_step_d_fn forward_d
        crnn_step_d_fn backward_d
    const crnn_cell crnn_cells[]
    const int CRNN_NCELLS

cdef extern from "_recurrent.h" nogil:
    const int CRNN_HAVE_GEMM
    void crnn_gemm_init()
    int crnn_gemm_best()
    int crnn_gemm_select(int level)
    int crnn_gemm_level()
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
    const int CRNN_POOL_MAX
    const int CRNN_HAVE_POOL
    void crnn_pool_run(crnn_task_fn fn, void* ctx, int n, int claimable)
    int crnn_pool_sync(int nparts)
    int crnn_pool_gather(int part, int nparts, int* rank)
    void crnn_pool_set_threads(int n)
    int crnn_pool_threads()
    int crnn_pool_available()
    unsigned long crnn_pool_counter(int which)
    void crnn_pool_calm()
    void crnn_pool_test_stall(long long ns, long long count)
    int crnn_claim(int* counter)

cdef extern from "_blasthreads.h" nogil:
    void crnn_blas_control(void* get, void* set)
    int crnn_blas_enter()
    void crnn_blas_leave()
    int crnn_blas_threads()

crnn_gemm_init()

# The cells, by the names model.py uses (rows of crnn_cells in _cells.h).
CELLS = {crnn_cells[i].name.decode(): i for i in range(CRNN_NCELLS)}
# The head.
cpdef enum:
    SOFTMAX = 0
    LINEAR = 1


ctypedef struct LayerDir:
    # One direction of one layer: its input width and where its weights are
    # in the flat parameters (bx = -1 without b_x).
    Py_ssize_t Din, wx, wh, bh, bx


ctypedef struct DirBuf:
    # The buffers of one direction of one layer during one call.
    char* A         # (T·B, G·H) pre-activations; saved values; then dA
    char* AH        # (B, G·H) sep_h cells: one step's recurrent product
    char* Hs        # (T+1, B, H)
    char* Cs        # (T+1, B, H) has_c cells
    char* E         # (T·B, extra·H) the cell's saved values; then its input-side gradient
    char* X         # (T·B, Din) reverse only: the input rows in this direction's order
    Py_ssize_t* tok # (T·B) reverse only, token ids: likewise
    char* Pf        # W_hᵀ packed for the forward steps
    char* Pb        # W_h packed for the backward steps
    char* dh        # (B, H) ∂L/∂h, carried back through time
    char* dc        # (B, H) ∂L/∂c
    char* up        # (T·B, H) reverse only: the upstream gradient in this direction's order
    double* acc     # (parts, G·H + extra·H) bias-gradient sums of each part


ctypedef struct Net:
    const crnn_cell* cell
    Py_ssize_t L, dirs, D, H, O, G, GH, Hd
    bint is_double
    Py_ssize_t wy, by   # head offsets (-1 without a head)
    LayerDir* ld        # L·dirs entries, layer-major, forward before reverse


ctypedef struct Call:
    Net* net
    char* W             # flat parameters
    char* dW            # flat gradients (NULL: no gradients)
    Py_ssize_t T, B
    const char* X       # layer-0 input (T·B, D), or NULL with tokens
    const Py_ssize_t* tokens
    const Py_ssize_t* bs        # (T) rows running at each step
    const Py_ssize_t* rev       # (T·B) the reverse order (bidirectional only)
    const char* h0      # (L·dirs, B, H) or NULL for zeros
    const char* c0
    const char* masks   # (L−1, T·B, Hd) dropout multipliers or NULL
    # head
    int output
    bint per_step
    const Py_ssize_t* classes
    const char* values
    double scale
    Py_ssize_t lo, hi   # per-sequence targets: the rows scored
    double loss
    # results (NULL when not wanted)
    char* y             # (T·B, O) outputs g(Z), zero on padding
    char* out           # (T·B, Hd) the top layer's outputs, zero on padding
    char* h_last        # (L·dirs, B, H)
    char* c_last
    double* norms       # (T) ‖∂L/∂h_t‖ of the top layer
    char* dX            # (T·B, D)
    char* dh0           # (L·dirs, B, H)
    char* dc0
    const char* dOut    # layer API: ∂L/∂out (T·B, Hd)
    const char* dHn     # layer API: ∂L/∂h_last, ∂L/∂c_last (L·dirs, B, H)
    const char* dCn
    bint want_loss, backward
    # work, set by the layout
    DirBuf* buf         # (L·dirs)
    char** Xin          # (L) layer l's input (T·B, Din_l) in time order
    char** Y            # (L) layer l's outputs put together (T·B, Hd), or NULL
    char* Z             # head logits (rows, O)
    char* Hn            # (B, Hd) final states of the top layer (per-sequence head)
    char* dY            # (T·B, Hd) ∂L/∂(a layer's outputs)
    char* dXl           # (T·B, Hd or D) ∂L/∂(a layer's input)
    char* dXr           # (T·B, Hd or D) the reverse direction's share, in its order
    double* sums        # (parts, O + 1) the head's partial sums (db_y, the loss)
    double* normp       # (parts, T) partial ‖∂L/∂h_t‖²
    int parts           # threads this call may use
    # interrupts (_interrupts.pxi)
    bint check_signals  # run Python's signal handlers now and then
    bint abort          # a handler raised: stop at the next boundary
    double checked_at


include "_workspace.pxi"
include "_products.pxi"
include "_heads.pxi"
include "_interrupts.pxi"
include "_loops.pxi"
include "_stack.pxi"
include "_update.pxi"
include "_train.pxi"
include "_api.pxi"
