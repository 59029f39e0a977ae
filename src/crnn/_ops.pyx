"""Small in-place vector kernels for the optimizers and gradient clipping.

They work on flat contiguous views, so an update needs no temporary array.
"""

from cython cimport floating

from libc.math cimport fabs, isfinite, sqrt

# Plain loops, not BLAS: in scipy's OpenBLAS, axpy over more than ~10⁴ values
# wakes BLAS's threads, which then spin for milliseconds on the core crnn's
# own threads need for the next training step (and these loops are
# memory-bound: one core keeps up).


def axpy(floating[::1] y, double alpha, const floating[::1] x):
    """y += alpha·x in place."""
    cdef Py_ssize_t i, n = y.shape[0]
    cdef floating a = <floating>alpha
    with nogil:
        for i in range(n):
            y[i] += a * x[i]


def nrm2(const floating[::1] x):
    """The Euclidean norm of x, computed without overflow or underflow."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef double s0 = 0, s1 = 0, m = 0, v, out
    with nogil:
        i = 0
        while i + 2 <= n:
            s0 += (<double>x[i]) * x[i]
            s1 += (<double>x[i + 1]) * x[i + 1]
            i += 2
        if i < n:
            s0 += (<double>x[i]) * x[i]
        s0 += s1
        # float32 squares cannot leave double's range; float64 ones can: rescale.
        if floating is double and (not isfinite(s0) or s0 < 1e-290):
            for i in range(n):
                v = fabs(x[i])
                if v != v:          # NaN: the norm is NaN
                    m = v
                    break
                if v > m:
                    m = v
            if m == 0 or not isfinite(m):
                out = m
            else:
                s0 = 0
                for i in range(n):
                    v = x[i] / m
                    s0 += v * v
                out = m * sqrt(s0)
        else:
            out = sqrt(s0)
    return out



# One pass per parameter array for every optimizer: the update rules of
# torch.optim, elementwise, in place, with no temporary arrays. The
# hyperparameters arrive already cast; d is the gradient plus weight decay.

def sgd_update(floating[::1] p, const floating[::1] g, floating[::1] buf, double lr,
               double momentum, double dampening, double weight_decay, bint nesterov,
               bint first):
    """p -= lr·d, d = g + wd·p, through the momentum buffer when momentum > 0."""
    cdef Py_ssize_t i, n = p.shape[0]
    cdef floating d, b
    cdef floating flr = lr, mu = momentum, damp = 1 - dampening, wd = weight_decay
    with nogil:
        for i in range(n):
            d = g[i] + wd * p[i]
            if mu != 0:
                b = d if first else mu * buf[i] + damp * d
                buf[i] = b
                d = d + mu * b if nesterov else b
            p[i] -= flr * d


def adagrad_update(floating[::1] p, const floating[::1] g, floating[::1] sum_sq, double lr,
                   double eps, double weight_decay):
    """sum_sq += d²; p -= lr·d / (√sum_sq + eps)."""
    cdef Py_ssize_t i, n = p.shape[0]
    cdef floating d
    cdef floating flr = lr, feps = eps, wd = weight_decay
    with nogil:
        for i in range(n):
            d = g[i] + wd * p[i]
            sum_sq[i] += d * d
            p[i] -= flr * d / (sqrt(sum_sq[i]) + feps)


def rmsprop_update(floating[::1] p, const floating[::1] g, floating[::1] square_avg,
                   floating[::1] grad_avg, floating[::1] buf, double lr, double alpha,
                   double eps, double weight_decay, double momentum, bint centered):
    """square_avg = α·square_avg + (1−α)·d²; p -= lr·d / (√(square_avg − grad_avg²) + eps).

    ``grad_avg`` is used only when centered, ``buf`` only when momentum > 0
    (they may then be any 1-element array).
    """
    cdef Py_ssize_t i, n = p.shape[0]
    cdef floating d, avg, b
    cdef floating flr = lr, a = alpha, a1 = 1 - alpha, feps = eps, wd = weight_decay
    cdef floating mu = momentum
    with nogil:
        for i in range(n):
            d = g[i] + wd * p[i]
            square_avg[i] = a * square_avg[i] + a1 * d * d
            if centered:
                grad_avg[i] = a * grad_avg[i] + a1 * d
                avg = sqrt(square_avg[i] - grad_avg[i] * grad_avg[i]) + feps
            else:
                avg = sqrt(square_avg[i]) + feps
            if mu > 0:
                b = mu * buf[i] + d / avg
                buf[i] = b
                p[i] -= flr * b
            else:
                p[i] -= flr * d / avg


def adam_update(floating[::1] p, const floating[::1] g, floating[::1] m, floating[::1] v,
                double lr, double beta1, double beta2, double eps, double weight_decay,
                double bias1, double bias2):
    """m, v = moving averages of d and d²; p -= (lr/bias1)·m / (√v/√bias2 + eps)."""
    cdef Py_ssize_t i, n = p.shape[0]
    cdef floating d
    cdef floating b1 = beta1, b1c = 1 - beta1, b2 = beta2, b2c = 1 - beta2
    cdef floating step = lr / bias1, rb2 = 1 / sqrt(bias2), feps = eps, wd = weight_decay
    with nogil:
        for i in range(n):
            d = g[i] + wd * p[i]
            m[i] = b1 * m[i] + b1c * d
            v[i] = b2 * v[i] + b2c * d * d
            p[i] -= step * m[i] / (sqrt(v[i]) * rb2 + feps)


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
