"""Small in-place vector kernels for the optimizers and gradient clipping.

They work on flat contiguous views, so an update needs no temporary array.
"""

from cython cimport floating

from crnn cimport _blas


def axpy(floating[::1] y, double alpha, const floating[::1] x):
    """y += alpha·x in place."""
    with nogil:
        _blas.axpy(<int>y.shape[0], <floating>alpha, &x[0], &y[0])


def nrm2(const floating[::1] x):
    """The Euclidean norm of x, computed without overflow."""
    cdef double out
    with nogil:
        out = _blas.nrm2(<int>x.shape[0], &x[0])
    return out
