# Row-major BLAS for crnn, over scipy.linalg.cython_blas (scipy's BLAS, found
# at import time: crnn links none of its own).
#
# BLAS is column-major. A row-major r×c matrix M with row stride ld is, read
# column-major, the c×r matrix Mᵀ with leading dimension ld. So the row-major
# product C = op(A)·op(B) (C is m×n) is the column-major product
# Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the operands and m/n, keep the transpose flags,
# and nothing is copied.
#
# `if floating is float` is resolved at compile time: each specialisation
# holds one direct call.

from cython cimport floating
from scipy.linalg cimport cython_blas as _b


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating* A, int lda,
                      const floating* B, int ldb, floating beta,
                      floating* C, int ldc) noexcept nogil:
    """Row-major C (m×n, row stride ldc) = alpha·op(A)·op(B) + beta·C."""
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if m <= 0 or n <= 0:
        return
    if floating is float:
        _b.sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>B, &ldb, <float*>A, &lda,
                 &beta, C, &ldc)
    else:
        _b.dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*>B, &ldb, <double*>A, &lda,
                 &beta, C, &ldc)


cdef inline void gemv(bint trans_a, int m, int n, floating alpha,
                      const floating* A, int lda, const floating* x,
                      floating beta, floating* y) noexcept nogil:
    """Row-major y = alpha·op(A)·x + beta·y for A m×n (row stride lda)."""
    # Row-major A is column-major Aᵀ: op(A) = A is 'T' on the column-major view.
    cdef char t = b'N' if trans_a else b'T'
    cdef int one = 1
    if m <= 0 or n <= 0:
        return
    if floating is float:
        _b.sgemv(&t, &n, &m, &alpha, <float*>A, &lda, <float*>x, &one, &beta, y, &one)
    else:
        _b.dgemv(&t, &n, &m, &alpha, <double*>A, &lda, <double*>x, &one, &beta, y, &one)


cdef inline void axpy(int n, floating alpha, const floating* x,
                      floating* y) noexcept nogil:
    """y += alpha·x over n contiguous values."""
    cdef int one = 1
    if floating is float:
        _b.saxpy(&n, &alpha, <float*>x, &one, y, &one)
    else:
        _b.daxpy(&n, &alpha, <double*>x, &one, y, &one)


cdef inline void scal(int n, floating alpha, floating* x) noexcept nogil:
    """x *= alpha over n contiguous values."""
    cdef int one = 1
    if floating is float:
        _b.sscal(&n, &alpha, x, &one)
    else:
        _b.dscal(&n, &alpha, x, &one)


cdef inline floating nrm2(int n, const floating* x) noexcept nogil:
    """Euclidean norm of n contiguous values, computed without overflow."""
    cdef int one = 1
    if floating is float:
        return _b.snrm2(&n, <float*>x, &one)
    else:
        return _b.dnrm2(&n, <double*>x, &one)
