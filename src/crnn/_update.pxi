# The optimizers' update rules — those of torch.optim, elementwise, in place, with
# no temporary arrays — and gradient clipping, over flat arrays. One source for
# crnn.optim's per-array steps (through _ops) and for the engine's whole training
# step (Engine.train), which includes it too.
#
# d is the gradient (clipped, then scaled by `scale`, the clip_norm coefficient;
# 1 when there is none: a product by 1 is exact) plus weight decay:
#
#   SGD       d = scale·g + wd·p;  b = d (first step) or μ·b + (1 − dampening)·d;
#             d = d + μ·b (Nesterov) or b (when μ > 0);  p −= lr·d
#   Adagrad   S += d²;  p −= lr·d / (√S + eps)        (lr already decayed)
#   RMSprop   A = α·A + (1 − α)·d²;  G = α·G + (1 − α)·d (centered);
#             s = √(A − G²) + eps or √A + eps;  b = μ·b + d/s, p −= lr·b (μ > 0),
#             else p −= lr·d/s
#   Adam      m = β1·m + (1 − β1)·d;  v = β2·v + (1 − β2)·d²;
#             p −= (lr/bias1)·m / (√v/√bias2 + eps),  bias_k = 1 − β_k^t
#
# Plain loops, not BLAS: in scipy's OpenBLAS, axpy over more than ~10⁴ values
# wakes BLAS's threads, which then spin for milliseconds on the core crnn's own
# threads need for the next training step (and these loops are memory-bound:
# one core keeps up).

from cython cimport floating
from libc.math cimport fabs, isfinite, sqrt

cdef void _sgd(floating* p, const floating* g, floating* buf, Py_ssize_t n, double lr,
               double momentum, double dampening, double weight_decay, bint nesterov,
               bint first, double scale) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating d, b
    cdef floating flr = lr, mu = momentum, damp = 1 - dampening, wd = weight_decay
    cdef floating s = scale
    for i in range(n):
        d = g[i] * s + wd * p[i]
        if mu != 0:
            b = d if first else mu * buf[i] + damp * d
            buf[i] = b
            d = d + mu * b if nesterov else b
        p[i] -= flr * d


cdef void _adagrad(floating* p, const floating* g, floating* sum_sq, Py_ssize_t n, double lr,
                   double eps, double weight_decay, double scale) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating d
    cdef floating flr = lr, feps = eps, wd = weight_decay, s = scale
    for i in range(n):
        d = g[i] * s + wd * p[i]
        sum_sq[i] += d * d
        p[i] -= flr * d / (sqrt(sum_sq[i]) + feps)


cdef void _rmsprop(floating* p, const floating* g, floating* square_avg, floating* grad_avg,
                   floating* buf, Py_ssize_t n, double lr, double alpha, double eps,
                   double weight_decay, double momentum, bint centered,
                   double scale) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating d, avg, b
    cdef floating flr = lr, a = alpha, a1 = 1 - alpha, feps = eps, wd = weight_decay
    cdef floating mu = momentum, s = scale
    for i in range(n):
        d = g[i] * s + wd * p[i]
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


cdef void _adam(floating* p, const floating* g, floating* m, floating* v, Py_ssize_t n,
                double lr, double beta1, double beta2, double eps, double weight_decay,
                double bias1, double bias2, double scale) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating d
    cdef floating b1 = beta1, b1c = 1 - beta1, b2 = beta2, b2c = 1 - beta2
    cdef floating step = lr / bias1, rb2 = 1 / sqrt(bias2), feps = eps, wd = weight_decay
    cdef floating s = scale
    for i in range(n):
        d = g[i] * s + wd * p[i]
        m[i] = b1 * m[i] + b1c * d
        v[i] = b2 * v[i] + b2c * d * d
        p[i] -= step * m[i] / (sqrt(v[i]) * rb2 + feps)


cdef double _norm(const floating* x, Py_ssize_t n) noexcept nogil:
    """The Euclidean norm of x, without overflow or underflow (NaN if any is NaN)."""
    cdef Py_ssize_t i = 0
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0, m = 0, v
    # Eight sums: an add's latency, not its throughput, bounds one chain (8 µs for a
    # char model's 23,000 gradients with two, 2.5 with eight).
    while i + 8 <= n:
        s0 += (<double>x[i]) * x[i]
        s1 += (<double>x[i + 1]) * x[i + 1]
        s2 += (<double>x[i + 2]) * x[i + 2]
        s3 += (<double>x[i + 3]) * x[i + 3]
        s4 += (<double>x[i + 4]) * x[i + 4]
        s5 += (<double>x[i + 5]) * x[i + 5]
        s6 += (<double>x[i + 6]) * x[i + 6]
        s7 += (<double>x[i + 7]) * x[i + 7]
        i += 8
    while i < n:
        s0 += (<double>x[i]) * x[i]
        i += 1
    s0 = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    # float32 squares cannot leave double's range; float64 ones can: rescale.
    if floating is float or (isfinite(s0) and s0 >= 1e-290):
        return sqrt(s0)
    for i in range(n):
        v = fabs(x[i])
        if v != v:
            return v
        if v > m:
            m = v
    if m == 0 or not isfinite(m):
        return m
    s0 = 0
    for i in range(n):
        v = x[i] / m
        s0 += v * v
    return m * sqrt(s0)


cdef void _clamp(floating* x, Py_ssize_t n, double limit) noexcept nogil:
    """x = clip(x, −limit, limit) in place (NaN stays NaN, as np.clip leaves it)."""
    cdef Py_ssize_t i
    cdef floating hi = limit, lo = -limit
    for i in range(n):
        if x[i] > hi:
            x[i] = hi
        elif x[i] < lo:
            x[i] = lo
