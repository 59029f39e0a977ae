# The head: the output projection of the top layer's outputs, fused with the
# output function or the loss, chunk by chunk of rows.
#
#   z = W_y·y_t + b_y
#   softmax:  g(z) = softmax(z);  l = logsumexp(z) − z[c];  ∂l/∂z = softmax(z) − onehot(c)
#   linear:   g(z) = z;           l = ½‖z − ŷ‖²;            ∂l/∂z = z − ŷ
#
# summed in double over the counted items: every (t, b) with t < len_b
# (per-step targets), or each scored sequence's final states (per-sequence
# targets: rows lo..hi-1 of h_n), and scaled by `scale` (1 for "sum", 1/count
# for "mean"). The logits become scale·∂l/∂z in place, zero on other rows.
# softmax is shifted by max(z) before exp, so it never overflows.

cdef extern from "_softmax.h" nogil:
    ctypedef float (*crnn_bias_max_fn)(float* z, const float* b, Py_ssize_t n) noexcept nogil
    ctypedef double (*crnn_exp_sum_fn)(float* z, float m, Py_ssize_t n) noexcept nogil
    const crnn_bias_max_fn crnn_bias_max_f[3]
    const crnn_exp_sum_fn crnn_exp_sum_f[3]


cdef inline floating _bias_max(floating* z, const floating* b, Py_ssize_t n) noexcept nogil:
    """z += b; returns max(z)."""
    cdef Py_ssize_t j
    cdef floating m
    if floating is float:
        m = crnn_bias_max_f[_cell_level](z, b, n)
    else:
        for j in range(n):
            z[j] += b[j]
        m = z[0]
        for j in range(1, n):
            if z[j] > m:
                m = z[j]
    return m


cdef inline double _exp_sum(floating* z, floating m, Py_ssize_t n) noexcept nogil:
    """z = e^(z − m); returns Σ z in double."""
    cdef Py_ssize_t j
    cdef double s = 0
    if floating is float:
        s = crnn_exp_sum_f[_cell_level](z, m, n)
    else:
        for j in range(n):
            z[j] = exp(z[j] - m)
            s += z[j]
    return s


cdef void _head_chunk(Call* c, const Job* j, Py_ssize_t i0, Py_ssize_t i1,
                      int part) noexcept nogil:
    """Rows [i0, i1): z = W_y·y + b_y, then g(z) (j.arg = 0) or the loss and dZ (1)."""
    _gemm_chunk(c, j, i0, i1, part)
    if c.net.is_double:
        _head_rows(c, j, i0, i1, part, <double>0)
    else:
        _head_rows(c, j, i0, i1, part, <float>0)


cdef inline bint _counted(const Call* c, Py_ssize_t i) noexcept nogil:
    """Whether row i of the head is scored (or output): its step is not padding."""
    return not c.per_step or i % c.B < c.bs[i // c.B]


cdef void _head_rows(Call* c, const Job* j, Py_ssize_t i0, Py_ssize_t i1, int part,
                     floating kind) noexcept nogil:
    cdef const Net* n = c.net
    cdef Py_ssize_t O = n.O, i, q, cls
    cdef const floating* b = <const floating*>c.W + n.by
    cdef double* sums = c.sums + part * (O + 1)
    cdef double total = 0, s
    cdef floating m, zc, e, d, scale = <floating>c.scale
    cdef floating* z
    cdef const floating* target
    for i in range(i0, i1):
        z = <floating*>j.C + i * O
        if not _counted(c, i):
            memset(z, 0, O * sizeof(floating))
            continue
        if c.output == SOFTMAX:
            m = _bias_max(z, b, O)
            if j.arg == 0:
                s = _exp_sum(z, m, O)
                e = <floating>(1 / s)
                for q in range(O):
                    z[q] *= e
                continue
            cls = c.classes[i]
            zc = z[cls]
            s = _exp_sum(z, m, O)
            total += log(s) + m - zc
            e = <floating>(c.scale / s)
            for q in range(O):
                z[q] *= e
            z[cls] -= scale
        else:
            if j.arg == 0:
                for q in range(O):
                    z[q] += b[q]
                continue
            target = <const floating*>c.values + i * O
            for q in range(O):
                d = z[q] + b[q] - target[q]
                total += 0.5 * (<double>d) * d
                z[q] = scale * d
        for q in range(O):
            sums[q] += z[q]
    sums[O] += total


cdef void _head_forward(Call* c, Region* R, bint loss) noexcept nogil:
    """The head over the top layer: y = g(z) into c.y, or the loss (c.loss) and dZ."""
    cdef const Net* n = c.net
    cdef Py_ssize_t es = sizeof(double) if n.is_double else sizeof(float)
    cdef Py_ssize_t rows, ld
    cdef const char* Y = _head_input(c, &rows, &ld)
    cdef Job* j
    cdef int p
    memset(c.sums, 0, c.parts * (n.O + 1) * sizeof(double))
    j = _gemm_job(R, False, True, rows, n.O, n.Hd, Y, ld, c.W + n.wy * es, n.Hd, 0,
                  c.Z if loss else c.y, n.O)
    # by rows whatever the shape: the loss and the output function work row by row
    j.fn, j.arg, j.split_n = _head_chunk, loss, False
    j.rows, j.cost, j.repack = rows, 2.0 * n.O * n.Hd, <double>n.O * n.Hd
    _run(R)
    c.loss = 0
    for p in range(c.parts):
        c.loss += c.sums[p * (n.O + 1) + n.O]
    c.loss *= c.scale


cdef const char* _head_input(const Call* c, Py_ssize_t* rows, Py_ssize_t* ld) noexcept nogil:
    """The rows the head reads: every step's outputs, or the scored final states."""
    cdef const Net* n = c.net
    cdef Py_ssize_t es = sizeof(double) if n.is_double else sizeof(float)
    cdef const DirBuf* top = &c.buf[(n.L - 1) * n.dirs]
    if c.per_step or c.y != NULL:
        rows[0] = c.T * c.B
        if n.dirs == 2:
            ld[0] = n.Hd
            return c.Y[n.L - 1]
        ld[0] = n.H
        return top.Hs + c.B * n.H * es
    rows[0] = c.hi - c.lo
    if n.dirs == 2:
        ld[0] = n.Hd
        return c.Hn + c.lo * n.Hd * es
    ld[0] = n.H
    return top.Hs + (c.T * c.B + c.lo) * n.H * es


cdef void _head_backward(Call* c, Region* R) noexcept nogil:
    """From dZ: dW_y, db_y, and ∂L/∂(the head's input) into c.dY (rows as read)."""
    cdef const Net* n = c.net
    cdef Py_ssize_t es = sizeof(double) if n.is_double else sizeof(float)
    cdef Py_ssize_t rows, ld, q
    cdef const char* Y = _head_input(c, &rows, &ld)
    cdef int p
    cdef double v
    _gemm_job(R, False, False, rows, n.Hd, n.O, c.Z, n.O, c.W + n.wy * es, n.Hd, 0, c.dY, n.Hd)
    _gemm_job(R, True, False, n.O, n.Hd, rows, c.Z, n.O, Y, ld, 0, c.dW + n.wy * es, n.Hd)
    _run(R)
    for q in range(n.O):
        v = 0
        for p in range(c.parts):
            v += c.sums[p * (n.O + 1) + q]
        if n.is_double:
            (<double*>(c.dW + n.by * es))[q] = v
        else:
            (<float*>(c.dW + n.by * es))[q] = <float>v
