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


cdef extern from "_fastmath.h" nogil:
    float crnn_expf(float x)
    float crnn_tanhf(float x)


def _tanhf(float[::1] x):
    """In place, the float32 tanh of the Elman kernels (for tests)."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            x[i] = crnn_tanhf(x[i])


def _expf(float[::1] x):
    """In place, the float32 exp of the softmax kernels (for tests)."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            x[i] = crnn_expf(x[i])
