# Layers and directions: the regions of a forward pass and of BPTT, in order.
# The plan is in the module docstring (_engine.pyx).

# The phases' times, accumulated while profiling (profile() switches it; a few
# clock reads per layer): the benchmarks' breakdown of a step.
PHASES = ("input projections", "forward loops", "head", "head backward",
          "backward setup", "backward loops", "weight gradients")
cdef bint _profiling = False
cdef double _phase_time[7]


cdef inline void _lap(int phase, double* since) noexcept nogil:
    """Add the time since ``since`` to ``phase`` and restart the clock (when profiling)."""
    cdef double now
    if _profiling:
        now = crnn_seconds()
        _phase_time[phase] += now - since[0]
        since[0] = now

cdef inline Py_ssize_t _es(const Call* c) noexcept nogil:
    return sizeof(double) if c.net.is_double else sizeof(float)


cdef void _loop_init(Loop* L, Call* c, Py_ssize_t i) noexcept nogil:
    cdef const Net* n = c.net
    cdef const LayerDir* w = &n.ld[i]
    cdef Py_ssize_t es = _es(c)
    memset(L, 0, sizeof(Loop))
    L.c = c
    L.cell = n.cell
    L.b = &c.buf[i]
    L.T, L.B, L.H, L.G, L.GH = c.T, c.B, n.H, n.G, n.GH
    L.nr = _nr(c)
    L.bs = c.bs
    L.tmap = c.rev if i % n.dirs == 1 else NULL
    L.Wh = c.W + w.wh * es
    if n.cell.sep_h:
        L.bias = c.W + w.bx * es
        L.bias_h = c.W + w.bh * es
    else:
        L.bias = c.W + w.bh * es
    L.want_dh0 = c.dh0 != NULL


cdef void _states_in(Call* c, char* dst, const char* src, Py_ssize_t i) noexcept nogil:
    """dst (B, H) = src[i] (a (L·dirs, B, H) array), or zeros when src is NULL."""
    cdef Py_ssize_t nb = c.B * c.net.H * _es(c)
    if src == NULL:
        memset(dst, 0, nb)
    else:
        memcpy(dst, src + i * nb, nb)


cdef void _stack_forward(Call* c, Region* R) noexcept nogil:
    cdef const Net* n = c.net
    cdef Py_ssize_t es = _es(c), TB = c.T * c.B, H = n.H, l, d, i
    cdef DirBuf* b
    cdef Job* j
    cdef const char* Xd
    cdef Loop loops[2]
    cdef double t0 = crnn_seconds() if _profiling else 0
    for l in range(n.L):
        if n.dirs == 2:     # the reverse direction's input, in its order
            b = &c.buf[l * 2 + 1]
            if l == 0 and c.tokens != NULL:
                j = _job(R, _gather_tokens_chunk, TB, 1, 256)
                j.C = <char*>b.tok
            else:
                j = _job(R, _gather_chunk, TB, n.ld[l * 2].Din, 64)
                j.A, j.lda, j.C, j.ldc, j.w = c.Xin[l], n.ld[l * 2].Din, b.X, n.ld[l * 2].Din, n.ld[l * 2].Din
            j.idx = c.rev
            _run(R)
        for d in range(n.dirs):
            i = l * n.dirs + d
            b = &c.buf[i]
            _states_in(c, b.Hs, c.h0, i)
            if b.Cs != NULL:
                _states_in(c, b.Cs, c.c0, i)
            if l == 0 and c.tokens != NULL:
                j = _job(R, _embed_chunk, TB, n.GH, 64)
                j.idx = c.tokens if d == 0 else b.tok
                j.B, j.ldb, j.n, j.C = c.W + n.ld[i].wx * es, n.D, n.GH, b.A
            else:
                Xd = c.Xin[l] if d == 0 else b.X
                _gemm_job(R, False, True, TB, n.GH, n.ld[i].Din, Xd, n.ld[i].Din,
                          c.W + n.ld[i].wx * es, n.ld[i].Din, 0, b.A, n.GH)
            if b.Pf != NULL:
                j = _job(R, _pack_chunk, n.G, 2.0 * H * H, 1)
                j.A, j.C, j.w = c.W + n.ld[i].wh * es, b.Pf, 0
            _loop_init(&loops[d], c, i)
        _run(R)
        _lap(0, &t0)
        _run_loops(&loops[0], &loops[1] if n.dirs == 2 else NULL, False, c.parts)
        _lap(1, &t0)
        if c.abort:
            return
        if c.Y[l] != NULL:
            _assemble(c, R, l, c.Y[l], c.masks + l * TB * n.Hd * es
                      if c.masks != NULL and l < n.L - 1 else NULL)
    if c.out != NULL:
        _assemble(c, R, n.L - 1, c.out, NULL)
    for i in range(n.L * n.dirs):
        b = &c.buf[i]
        if c.h_last != NULL:
            memcpy(c.h_last + i * c.B * H * es, b.Hs + TB * H * es, c.B * H * es)
        if c.c_last != NULL and b.Cs != NULL:
            memcpy(c.c_last + i * c.B * H * es, b.Cs + TB * H * es, c.B * H * es)
    if n.O and n.dirs == 2:     # h_n of the top layer, for per-sequence targets
        for d in range(2):
            b = &c.buf[(n.L - 1) * 2 + d]
            for i in range(c.B):
                memcpy(c.Hn + (i * n.Hd + d * H) * es, b.Hs + (TB + i) * H * es, H * es)


cdef void _assemble(Call* c, Region* R, Py_ssize_t l, char* dst, const char* mask) noexcept nogil:
    """dst (T·B, Hd) = layer l's outputs in time order [⊙ mask], zero on padding."""
    cdef Job* j = _job(R, _assemble_chunk, c.T * c.B, c.net.Hd, 64)
    j.C, j.M, j.arg = dst, mask, l
    _run(R)


cdef void _assemble_chunk(Call* c, const Job* j, Py_ssize_t i0, Py_ssize_t i1,
                          int part) noexcept nogil:
    if c.net.is_double:
        _assemble_rows(c, j, i0, i1, <double>0)
    else:
        _assemble_rows(c, j, i0, i1, <float>0)


cdef inline void _assemble_rows(Call* c, const Job* j, Py_ssize_t i0, Py_ssize_t i1,
                                floating kind) noexcept nogil:
    cdef const Net* n = c.net
    cdef Py_ssize_t i, q, B = c.B, H = n.H, Hd = n.Hd
    cdef floating* out
    cdef const floating* fwd = <const floating*>c.buf[j.arg * n.dirs].Hs + B * H
    cdef const floating* rev = <const floating*>c.buf[j.arg * n.dirs + 1].Hs + B * H \
        if n.dirs == 2 else NULL
    cdef const floating* M
    for i in range(i0, i1):
        out = <floating*>j.C + i * Hd
        if i % B >= c.bs[i // B]:
            memset(out, 0, Hd * sizeof(floating))
            continue
        memcpy(out, fwd + i * H, H * sizeof(floating))
        if rev != NULL:
            memcpy(out + H, rev + c.rev[i] * H, H * sizeof(floating))
        if j.M != NULL:
            M = <const floating*>j.M + i * Hd
            for q in range(Hd):
                out[q] *= M[q]


cdef void _stack_backward(Call* c, Region* R, const char* dY) noexcept nogil:
    """BPTT through every layer, from dY = ∂L/∂(top layer's outputs) (T·B, Hd) or
    NULL, plus what the final states receive (the head's per-sequence rows in
    c.dY, or the layer API's dHn, dCn)."""
    cdef const Net* n = c.net
    cdef const crnn_cell* cell = n.cell
    cdef Py_ssize_t es = _es(c), TB = c.T * c.B, H = n.H, GH = n.GH, l, d, i, r, q, p
    cdef Py_ssize_t xs = cell.x_split * H, ex = cell.extra * H, Din
    cdef DirBuf* b
    cdef Job* j
    cdef Loop loops[2]
    cdef const char* Xd
    cdef char* dX
    cdef char* tmp
    cdef bint per_seq_top = n.O and not c.per_step and c.dOut == NULL
    cdef double t0 = crnn_seconds() if _profiling else 0
    memset(c.normp, 0, c.parts * c.T * sizeof(double))
    for l in range(n.L - 1, -1, -1):
        for d in range(n.dirs):
            i = l * n.dirs + d
            b = &c.buf[i]
            _states_in(c, b.dh, c.dHn, i)
            if b.dc != NULL:
                _states_in(c, b.dc, c.dCn, i)
            if per_seq_top and l == n.L - 1:
                _add_final(c, b.dh, c.dY, d)
            memset(b.acc, 0, c.parts * (GH + ex) * sizeof(double))
            _loop_init(&loops[d], c, i)
            if dY != NULL:
                if d == 0:
                    loops[d].up, loops[d].ldup = dY, n.Hd
                else:
                    j = _job(R, _gather_chunk, TB, H, 64)
                    j.A, j.lda, j.C, j.ldc, j.w, j.idx = dY + H * es, n.Hd, b.up, H, H, c.rev
                    loops[d].up, loops[d].ldup = b.up, H
            if l == n.L - 1 and c.norms != NULL:
                loops[d].norms = c.normp
            if b.Pb != NULL:
                j = _job(R, _pack_chunk, 1, 2.0 * GH * H, 1)
                j.A, j.C, j.w = c.W + n.ld[i].wh * es, b.Pb, 1
        _run(R)
        _lap(4, &t0)
        _run_loops(&loops[0], &loops[1] if n.dirs == 2 else NULL, True, c.parts)
        _lap(5, &t0)
        if c.abort:
            return
        # The weight gradients, and ∂L/∂(this layer's input) when anything needs it.
        Din = n.ld[l * n.dirs].Din
        dX = c.dXl if l > 0 else c.dX
        for d in range(n.dirs):
            i = l * n.dirs + d
            b = &c.buf[i]
            Xd = c.Xin[l] if d == 0 else b.X
            _gemm_job(R, True, False, GH, H, TB, b.A, GH, b.Hs, H, 0, c.dW + n.ld[i].wh * es, H)
            if l == 0 and c.tokens != NULL:
                j = _job(R, _unembed_chunk, GH, 2.0 * TB, 16)
                j.A, j.lda, j.A2, j.lda2, j.w, j.k = b.A, GH, b.E, ex, xs, TB
                j.idx, j.C, j.ldc = c.tokens if d == 0 else b.tok, c.dW + n.ld[i].wx * es, n.D
            else:
                _gemm_job(R, True, False, xs, Din, TB, b.A, GH, Xd, Din, 0,
                          c.dW + n.ld[i].wx * es, Din)
                if ex:
                    _gemm_job(R, True, False, ex, Din, TB, b.E, ex, Xd, Din, 0,
                              c.dW + (n.ld[i].wx + xs * Din) * es, Din)
            if dX != NULL:
                j = _gemm_job(R, False, False, TB, Din, xs, b.A, GH, c.W + n.ld[i].wx * es,
                              Din, 0, dX if d == 0 else c.dXr, Din)
                if ex:
                    j.A2, j.lda2, j.B2, j.ldb2, j.k2 = b.E, ex, c.W + (n.ld[i].wx + xs * Din) * es, Din, ex
        _run(R)
        for d in range(n.dirs):
            _bias_grads(c, l * n.dirs + d)
        if dX != NULL and n.dirs == 2:
            j = _job(R, _scatter_add_chunk, TB, Din, 64)
            j.A, j.lda, j.C, j.ldc, j.w, j.idx = c.dXr, Din, dX, Din, Din, c.rev
            _run(R)
        if l > 0:
            if c.masks != NULL:
                j = _job(R, _scale_chunk, TB, n.Hd, 64)
                j.A, j.C, j.w, j.M = dX, dX, n.Hd, c.masks + (l - 1) * TB * n.Hd * es
                _run(R)
            # this layer's ∂L/∂input is the next one's upstream
            tmp = c.dY
            c.dY = c.dXl
            c.dXl = tmp
            dY = c.dY
        _lap(6, &t0)
        for d in range(n.dirs):
            i = l * n.dirs + d
            if c.dh0 != NULL:
                memcpy(c.dh0 + i * c.B * H * es, c.buf[i].dh, c.B * H * es)
            if c.dc0 != NULL and c.buf[i].dc != NULL:
                memcpy(c.dc0 + i * c.B * H * es, c.buf[i].dc, c.B * H * es)
    if c.norms != NULL:
        for r in range(c.T):
            q = 0
            c.norms[r] = 0
            for p in range(c.parts):
                c.norms[r] += c.normp[p * c.T + r]
            c.norms[r] = sqrt(c.norms[r])


cdef void _add_final(Call* c, char* dh, const char* dHn, Py_ssize_t d) noexcept nogil:
    """dh[lo:hi] += the head's ∂L/∂h_n rows for direction d."""
    cdef Py_ssize_t r, q, H = c.net.H, Hd = c.net.Hd
    for r in range(c.lo, c.hi):
        if c.net.is_double:
            for q in range(H):
                (<double*>dh)[r * H + q] += (<const double*>dHn)[(r - c.lo) * Hd + d * H + q]
        else:
            for q in range(H):
                (<float*>dh)[r * H + q] += (<const float*>dHn)[(r - c.lo) * Hd + d * H + q]


cdef void _bias_grads(Call* c, Py_ssize_t i) noexcept nogil:
    """db_h = Σ dA over every part's sums; a cell with b_x: db_x likewise, with
    gates >= x_split from the sums of e."""
    cdef const Net* n = c.net
    cdef const crnn_cell* cell = n.cell
    cdef Py_ssize_t GH = n.GH, ex = cell.extra * n.H, xs = cell.x_split * n.H, q, es = _es(c)
    cdef int p
    cdef double v, w
    cdef double* acc = c.buf[i].acc
    for q in range(GH):
        v = 0
        w = 0
        for p in range(c.parts):
            v += acc[p * (GH + ex) + q]
            if q >= xs:
                w += acc[p * (GH + ex) + GH + q - xs]
        _store(c.dW + n.ld[i].bh * es, q, v, n.is_double)
        if n.ld[i].bx >= 0:
            _store(c.dW + n.ld[i].bx * es, q, v if q < xs else w, n.is_double)


cdef inline void _store(char* p, Py_ssize_t q, double v, bint is_double) noexcept nogil:
    if is_double:
        (<double*>p)[q] = v
    else:
        (<float*>p)[q] = <float>v
