"""Small in-place vector kernels for the optimizers and gradient clipping.

They work on flat contiguous views, so an update needs no temporary array.
The update rules and the norm are in _update.pxi, shared with the engine's
whole training step.
"""

from cython cimport floating

include "_update.pxi"


def axpy(floating[::1] y, double alpha, const floating[::1] x):
    """y += alpha·x in place."""
    cdef Py_ssize_t i, n = y.shape[0]
    cdef floating a = <floating>alpha
    with nogil:
        for i in range(n):
            y[i] += a * x[i]


def nrm2(const floating[::1] x):
    """The Euclidean norm of x, computed without overflow or underflow."""
    cdef double out
    with nogil:
        out = _norm(&x[0], x.shape[0]) if x.shape[0] else 0.0
    return out


def int_bounds(const Py_ssize_t[::1] a):
    """(min, max) of a non-empty intp vector in one pass (numpy's two reductions cost
    microseconds each on the few ids of a small call)."""
    cdef Py_ssize_t i, lo = a[0], hi = a[0]
    with nogil:
        for i in range(1, a.shape[0]):
            if a[i] < lo:
                lo = a[i]
            elif a[i] > hi:
                hi = a[i]
    return lo, hi


# One pass per parameter array for every optimizer (the rules: _update.pxi).
# The 1-element buffers stand for those an optimizer's options leave unused.

def sgd_update(floating[::1] p, const floating[::1] g, floating[::1] buf, double lr,
               double momentum, double dampening, double weight_decay, bint nesterov,
               bint first):
    """p -= lr·d, d = g + wd·p, through the momentum buffer when momentum > 0."""
    with nogil:
        _sgd(&p[0], &g[0], &buf[0], p.shape[0], lr, momentum, dampening, weight_decay,
             nesterov, first, 1.0)


def adagrad_update(floating[::1] p, const floating[::1] g, floating[::1] sum_sq, double lr,
                   double eps, double weight_decay):
    """sum_sq += d²; p -= lr·d / (√sum_sq + eps)."""
    with nogil:
        _adagrad(&p[0], &g[0], &sum_sq[0], p.shape[0], lr, eps, weight_decay, 1.0)


def rmsprop_update(floating[::1] p, const floating[::1] g, floating[::1] square_avg,
                   floating[::1] grad_avg, floating[::1] buf, double lr, double alpha,
                   double eps, double weight_decay, double momentum, bint centered):
    """square_avg = α·square_avg + (1−α)·d²; p -= lr·d / (√(square_avg − grad_avg²) + eps).

    ``grad_avg`` is used only when centered, ``buf`` only when momentum > 0
    (they may then be any 1-element array).
    """
    with nogil:
        _rmsprop(&p[0], &g[0], &square_avg[0], &grad_avg[0], &buf[0], p.shape[0], lr, alpha,
                 eps, weight_decay, momentum, centered, 1.0)


def adam_update(floating[::1] p, const floating[::1] g, floating[::1] m, floating[::1] v,
                double lr, double beta1, double beta2, double eps, double weight_decay,
                double bias1, double bias2):
    """m, v = moving averages of d and d²; p -= (lr/bias1)·m / (√v/√bias2 + eps)."""
    with nogil:
        _adam(&p[0], &g[0], &m[0], &v[0], p.shape[0], lr, beta1, beta2, eps, weight_decay,
              bias1, bias2, 1.0)


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
