# The time loops of one direction of one layer, forward and backward, for any
# cell of _cells.h. A loop runs whole on one thread, or split over crnn's
# threads:
#
#   by units   each part owns hidden units [u0, u1) of every gate (whole
#              panels of the packed W_h): its share of each step's product
#              and of the cell; one barrier per step, since the next step's
#              product reads every unit. Repeated stalls at the barriers (a
#              core taken by another process) hand the rest of the loop to
#              part 0 (_pool.h).
#   by rows    each part owns whole sequences for all T steps: no barrier;
#              rows are cut so that each block has about the same number of
#              valid steps, and blocks are claimed, so a slow part takes fewer.
#   by loops   the two directions of a layer, one per part.

cdef enum:
    _WHOLE = 0
    _UNITS = 1
    _ROWS = 2

ctypedef struct Loop:
    Call* c
    const crnn_cell* cell
    DirBuf* b
    Py_ssize_t T, B, H, G, GH, nr
    Py_ssize_t t_lo, t_hi       # the chunk of steps being run (_run_loop)
    const Py_ssize_t* bs
    const Py_ssize_t* tmap      # reverse: rev, to find each row's time (hidden-gradient norms)
    const char* Wh
    const char* bias            # b_h (a sep_h cell: b_x)
    const char* bias_h          # a sep_h cell: b_h
    const char* up              # backward: ∂L/∂h_t from above, rows in this loop's order
    Py_ssize_t ldup
    bint want_dh0
    double* norms               # (parts, T) or NULL
    int split
    int nblocks, next           # by rows: the blocks and the claim counter
    Py_ssize_t rb[CRNN_POOL_MAX * 4 + 1]

# Loops run (for tests: which split really ran): whole, by units, by rows, as
# pairs; and by the per-step product (BLAS, crnn's kernel at each level) and
# the cells' level.
cdef unsigned long _runs[4]
cdef unsigned long _kernel_runs[4]
cdef unsigned long _cell_runs[3]
# Tests: force a split (-1: choose by size; 3: pairs even when small).
cdef int _forced_split = -1

ctypedef struct Loops:          # both directions of a layer, claimed one at a time
    Loop* loop[2]
    int n, next
    bint backward


cdef inline void _cell(const Loop* L, bint backward, floating* a, const floating* ah,
                       const floating* h_prev, floating* h, const floating* c_prev,
                       floating* c, floating* dh, floating* dc, floating* e, Py_ssize_t m,
                       Py_ssize_t u0, Py_ssize_t u1) noexcept nogil:
    """Call the cell's pointwise kernel on m rows × units [u0, u1) of one step."""
    cdef crnn_step_f sf
    cdef crnn_step_d sd
    if floating is float:
        sf.a = a; sf.ah = ah; sf.h_prev = h_prev; sf.h = h; sf.c_prev = c_prev; sf.c = c
        sf.dh = dh; sf.dc = dc; sf.e = e
        sf.bias = <const float*>L.bias; sf.bias_h = <const float*>L.bias_h
        sf.m = m; sf.H = L.H; sf.u0 = u0; sf.u1 = u1; sf.lda = L.GH; sf.ldh = L.H
        if backward:
            L.cell.backward_f[_cell_level](&sf)
        else:
            L.cell.forward_f[_cell_level](&sf)
    else:
        sd.a = a; sd.ah = ah; sd.h_prev = h_prev; sd.h = h; sd.c_prev = c_prev; sd.c = c
        sd.dh = dh; sd.dc = dc; sd.e = e
        sd.bias = <const double*>L.bias; sd.bias_h = <const double*>L.bias_h
        sd.m = m; sd.H = L.H; sd.u0 = u0; sd.u1 = u1; sd.lda = L.GH; sd.ldh = L.H
        if backward:
            L.cell.backward_d(&sd)
        else:
            L.cell.forward_d(&sd)


cdef inline void _packed_gemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* A,
                         Py_ssize_t lda, const floating* P, Py_ssize_t ps, floating* C,
                         Py_ssize_t ldc, bint accumulate) noexcept nogil:
    if floating is float:
        crnn_sgemm(m, n, k, A, lda, 1, P, ps, C, ldc, accumulate)
    else:
        crnn_dgemm(m, n, k, A, lda, 1, P, ps, C, ldc, accumulate)


cdef inline void _product_forward(const Loop* L, Py_ssize_t m, const floating* h,
                                  floating* C, Py_ssize_t u0, Py_ssize_t u1,
                                  bint accumulate) noexcept nogil:
    """C[:, g·H + u] (+)= (h·W_hᵀ)[:, g·H + u] for u in [u0, u1), every gate g; m rows."""
    cdef Py_ssize_t g, H = L.H, GH = L.GH, nr = L.nr, npan
    cdef const floating* W = <const floating*>L.Wh
    if nr:
        npan = _panels(H, nr)
        if u0 == 0 and u1 == H and npan * nr == H:     # gates' panels are contiguous
            _packed_gemm(m, GH, H, h, H, <const floating*>L.b.Pf, H * nr, C, GH, accumulate)
            return
        for g in range(L.G):
            _packed_gemm(m, u1 - u0, H, h, H, <const floating*>L.b.Pf + (g * npan + u0 // nr) * H * nr,
                    H * nr, C + g * H + u0, GH, accumulate)
        return
    if u0 == 0 and u1 == H:
        if m == 1:
            _blas.gemv(False, <int>GH, <int>H, <floating>1, W, <int>H, h, <floating>accumulate, C)
        else:
            _blas.gemm(False, True, <int>m, <int>GH, <int>H, <floating>1, h, <int>H, W, <int>H,
                       <floating>accumulate, C, <int>GH)
        return
    for g in range(L.G):
        _blas.gemm(False, True, <int>m, <int>(u1 - u0), <int>H, <floating>1, h, <int>H,
                   W + (g * H + u0) * H, <int>H, <floating>accumulate, C + g * H + u0, <int>GH)


cdef inline void _product_backward(const Loop* L, Py_ssize_t m, const floating* dA,
                                   floating* dh, Py_ssize_t u0, Py_ssize_t u1,
                                   bint accumulate) noexcept nogil:
    """dh[:, u0:u1] (+)= (dA·W_h)[:, u0:u1]; m rows."""
    cdef Py_ssize_t H = L.H, GH = L.GH, nr = L.nr
    cdef const floating* W = <const floating*>L.Wh
    if nr:
        _packed_gemm(m, u1 - u0, GH, dA, GH, <const floating*>L.b.Pb + (u0 // nr) * GH * nr, GH * nr,
                dh + u0, H, accumulate)
    elif m == 1:
        _blas.gemv(True, <int>GH, <int>(u1 - u0), <floating>1, W + u0, <int>H, dA,
                   <floating>accumulate, dh + u0)
    else:
        _blas.gemm(False, False, <int>m, <int>(u1 - u0), <int>GH, <floating>1, dA, <int>GH,
                   W + u0, <int>H, <floating>accumulate, dh + u0, <int>H)


cdef void _forward_block(const Loop* L, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t u0,
                         Py_ssize_t u1, int part, int nparts, floating kind) noexcept nogil:
    """The forward loop over rows [r0, r1) × units [u0, u1); Hs[0] (and Cs[0]) set,
    A holds the input projections."""
    cdef Py_ssize_t t, r, bt, T = L.T, B = L.B, H = L.H, GH = L.GH, step = L.B * L.H
    cdef Py_ssize_t ex = L.cell.extra * L.H
    cdef bint sep = L.cell.sep_h
    cdef floating* Hs = <floating*>L.b.Hs
    cdef floating* Cs = <floating*>L.b.Cs
    cdef floating* A
    cdef floating* AH = <floating*>L.b.AH
    cdef floating* E = <floating*>L.b.E
    cdef floating* prev
    cdef floating* cur
    for t in range(L.t_lo, L.t_hi):
        bt = min(max(L.bs[t], r0), r1)
        prev = Hs + t * step
        cur = prev + step
        A = <floating*>L.b.A + t * B * GH
        if bt > r0 and u1 > u0:
            _product_forward(L, bt - r0, prev + r0 * H, (AH if sep else A) + r0 * GH, u0, u1,
                             not sep)
            _cell(L, False, A + r0 * GH, AH + r0 * GH if sep else NULL, prev + r0 * H,
                  cur + r0 * H, Cs + t * step + r0 * H if Cs != NULL else NULL,
                  Cs + (t + 1) * step + r0 * H if Cs != NULL else NULL, NULL, NULL,
                  E + (t * B + r0) * ex if E != NULL else NULL, bt - r0, u0, u1)
        for r in range(bt, r1):     # padding: the state is carried
            memcpy(cur + r * H + u0, prev + r * H + u0, (u1 - u0) * sizeof(floating))
            if Cs != NULL:
                memcpy(Cs + (t + 1) * step + r * H + u0, Cs + t * step + r * H + u0,
                       (u1 - u0) * sizeof(floating))
        if nparts > 1 and not crnn_pool_sync(nparts):
            if part != 0:
                return
            nparts, u0, u1 = 1, 0, H


cdef void _backward_block(const Loop* L, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t u0,
                          Py_ssize_t u1, int part, int nparts, floating kind) noexcept nogil:
    """BPTT over rows [r0, r1) × units [u0, u1): dh (and dc) hold ∂L/∂ of the final
    states on entry and of the initial ones on exit (with want_dh0); A becomes dA."""
    cdef Py_ssize_t t, r, g, u, bt, T = L.T, B = L.B, H = L.H, GH = L.GH, step = L.B * L.H
    cdef Py_ssize_t ex = L.cell.extra * L.H, tt
    cdef floating* Hs = <floating*>L.b.Hs
    cdef floating* Cs = <floating*>L.b.Cs
    cdef floating* E = <floating*>L.b.E
    cdef floating* dh = <floating*>L.b.dh
    cdef floating* dc = <floating*>L.b.dc
    cdef double* acc = L.b.acc + part * (GH + ex)
    cdef floating* A
    cdef floating* d
    cdef floating* Et
    cdef const floating* up
    cdef double sq
    for t in range(L.t_hi - 1, L.t_lo - 1, -1):
        bt = min(max(L.bs[t], r0), r1)
        A = <floating*>L.b.A + t * B * GH
        Et = E + t * B * ex if E != NULL else NULL
        for r in range(r0, bt):
            d = dh + r * H
            if L.up != NULL:
                up = <const floating*>L.up + (t * B + r) * L.ldup
                for u in range(u0, u1):
                    d[u] += up[u]
            if L.norms != NULL:
                sq = 0
                for u in range(u0, u1):
                    sq += (<double>d[u]) * d[u]
                tt = L.tmap[t * B + r] // B if L.tmap != NULL else t
                L.norms[part * T + tt] += sq
        if bt > r0 and u1 > u0:
            _cell(L, True, A + r0 * GH, NULL, Hs + t * step + r0 * H,
                  Hs + (t + 1) * step + r0 * H,
                  Cs + t * step + r0 * H if Cs != NULL else NULL,
                  Cs + (t + 1) * step + r0 * H if Cs != NULL else NULL,
                  dh + r0 * H, dc + r0 * H if dc != NULL else NULL,
                  Et + r0 * ex if Et != NULL else NULL, bt - r0, u0, u1)
            for r in range(r0, bt):      # Σ dA (and Σ e): the bias gradients
                for g in range(L.G):
                    d = A + r * GH + g * H
                    for u in range(u0, u1):
                        acc[g * H + u] += d[u]
                if Et != NULL:
                    for u in range(u0, u1):
                        acc[GH + u] += Et[r * ex + u]
        for r in range(bt, r1):      # padding: nothing flows into its weights
            for g in range(L.G):
                memset(A + r * GH + g * H + u0, 0, (u1 - u0) * sizeof(floating))
            if Et != NULL:
                memset(Et + r * ex + u0, 0, (u1 - u0) * sizeof(floating))
        if nparts > 1 and not crnn_pool_sync(nparts):
            if part != 0:
                return
            nparts, u0, u1 = 1, 0, H
        if (t > 0 or L.want_dh0) and bt > r0 and u1 > u0:
            _product_backward(L, bt - r0, A + r0 * GH, dh + r0 * H, u0, u1,
                              L.cell.dh_direct)


cdef void _block(const Loop* L, bint backward, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t u0,
                 Py_ssize_t u1, int part, int nparts) noexcept nogil:
    if L.c.net.is_double:
        if backward:
            _backward_block(L, r0, r1, u0, u1, part, nparts, <double>0)
        else:
            _forward_block(L, r0, r1, u0, u1, part, nparts, <double>0)
    elif backward:
        _backward_block(L, r0, r1, u0, u1, part, nparts, <float>0)
    else:
        _forward_block(L, r0, r1, u0, u1, part, nparts, <float>0)


cdef void _units_fwd_task(void* ctx, int part, int nparts) noexcept nogil:
    _units_part(<Loop*>ctx, False, part, nparts)


cdef void _units_bwd_task(void* ctx, int part, int nparts) noexcept nogil:
    _units_part(<Loop*>ctx, True, part, nparts)


cdef void _units_part(Loop* L, bint backward, int part, int nparts) noexcept nogil:
    """Units [u0, u1) of part ``part``: whole panels (of 16 columns through BLAS)."""
    cdef Py_ssize_t w = L.nr if L.nr else 16
    cdef Py_ssize_t q = _panels(L.H, w)
    nparts = crnn_pool_gather(part, nparts, &part)
    if part == 0:
        _runs[_UNITS if nparts > 1 else _WHOLE] += 1
    _block(L, backward, 0, L.B, min(w * (q * part // nparts), L.H),
           min(w * (q * (part + 1) // nparts), L.H), part, nparts)


cdef void _rows_fwd_task(void* ctx, int part, int nparts) noexcept nogil:
    _rows_part(<Loop*>ctx, False, part, nparts)


cdef void _rows_bwd_task(void* ctx, int part, int nparts) noexcept nogil:
    _rows_part(<Loop*>ctx, True, part, nparts)


cdef void _rows_part(Loop* L, bint backward, int part, int nparts) noexcept nogil:
    cdef int k
    if part == 0:
        _runs[_ROWS if nparts > 1 else _WHOLE] += 1
    while True:
        k = crnn_claim(&L.next)
        if k >= L.nblocks:
            return
        _block(L, backward, L.rb[k], L.rb[k + 1], 0, L.H, part, 1)


cdef void _loops_task(void* ctx, int part, int nparts) noexcept nogil:
    cdef Loops* S = <Loops*>ctx
    cdef int k
    if part == 0:
        _runs[3 if nparts > 1 else _WHOLE] += 1
    while True:
        k = crnn_claim(&S.next)
        if k >= S.n:
            return
        _block(S.loop[k], S.backward, 0, S.loop[k].B, 0, S.loop[k].H, part, 1)


cdef int _plan(Loop* L, int parts) noexcept nogil:
    """How to split loop L over up to ``parts`` threads (sets L.split and, by
    rows, L's blocks); returns the parts to ask for."""
    cdef Py_ssize_t w = L.nr if L.nr else 16, npan = _panels(L.H, w)
    cdef Py_ssize_t r = 0, t, total = 0, done = 0, cut
    cdef int k, want = 2 * parts
    L.split = _WHOLE
    if _forced_split == _WHOLE or parts <= 1:
        return 1
    if _forced_split == _UNITS:
        L.split = _UNITS
        return <int>min(parts, npan)
    if _forced_split != _ROWS:
        # Below ~1 µs of work a step, a barrier (or a second thread) costs more than it saves.
        if 2.0 * L.B * L.GH * L.H < 2e5:
            return 1
        if npan >= 2 * parts or (L.B < 8 * parts and npan >= parts):
            L.split = _UNITS
            return parts
        if L.B < 8 * parts:
            return 1
    # By rows: two blocks a part, of about the same number of valid steps, cut
    # at multiples of 4 rows (the kernel's register block).
    L.split = _ROWS
    for t in range(L.T):
        total += L.bs[t]
    L.nblocks = 0
    L.next = 0
    L.rb[0] = 0
    for k in range(1, want):
        while r < L.B and done * want < total * k:
            done += _valid_steps(L, r)
            r += 1
        cut = min((r + 3) // 4 * 4, L.B)
        while r < cut:
            done += _valid_steps(L, r)
            r += 1
        if cut > L.rb[L.nblocks] and cut < L.B:
            L.nblocks += 1
            L.rb[L.nblocks] = cut
    L.nblocks += 1
    L.rb[L.nblocks] = L.B
    return parts


cdef inline Py_ssize_t _valid_steps(const Loop* L, Py_ssize_t r) noexcept nogil:
    """len_r: the steps at which row r runs (bs is non-increasing)."""
    cdef Py_ssize_t lo = 0, hi = L.T, mid
    while lo < hi:      # the first t with bs[t] <= r
        mid = (lo + hi) // 2
        if L.bs[mid] > r:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef Py_ssize_t _chunk_steps(const Loop* L) noexcept nogil:
    """Steps of a chunk: about _CHUNK_FLOPS of the per-step products."""
    cdef double steps = _CHUNK_FLOPS / (2.0 * L.B * L.GH * L.H + 1)
    return L.T if steps >= L.T else max(1, <Py_ssize_t>steps)


cdef inline void _set_chunk(Loop* L, bint backward, Py_ssize_t t, Py_ssize_t k) noexcept nogil:
    """The chunk of k steps that starts t steps into the loop (backward: from the end)."""
    if backward:
        L.t_lo, L.t_hi = max(L.T - t - k, 0), L.T - t
    else:
        L.t_lo, L.t_hi = t, min(t + k, L.T)


cdef void _run_chunk(Loop* L, bint backward, int n) noexcept nogil:
    if L.split == _UNITS:
        crnn_pool_run(_units_bwd_task if backward else _units_fwd_task, L, n, 0)
    elif L.split == _ROWS:
        L.next = 0
        crnn_pool_run(_rows_bwd_task if backward else _rows_fwd_task, L, n, 1)
    else:
        _runs[_WHOLE] += 1
        _block(L, backward, 0, L.B, 0, L.H, 0, 1)


cdef void _run_loop(Loop* L, bint backward, int parts) noexcept nogil:
    """Run one loop, split as _plan says, in chunks of steps (backward: last chunk
    first), looking for interrupts between them; every state a step needs is in
    the buffers, so a chunk takes up where the previous one stopped."""
    global _chunks_run
    cdef int n = _plan(L, parts)
    cdef Py_ssize_t k = _chunk_steps(L), t
    _kernel_runs[crnn_gemm_level() + 1 if L.nr else 0] += 1
    if L.c.net.is_double == 0:
        _cell_runs[_cell_level] += 1
    t = 0
    while t < L.T:
        _set_chunk(L, backward, t, k)
        t += k
        _run_chunk(L, backward, n)
        _chunks_run += 1
        if _interrupted(L.c):
            return


cdef void _run_loops(Loop* fwd, Loop* rev, bint backward, int parts) noexcept nogil:
    """Both directions of a layer: side by side when there are threads for it."""
    global _chunks_run
    cdef Loops S
    cdef bint pair
    cdef Py_ssize_t k, t
    if rev == NULL:
        _run_loop(fwd, backward, parts)
        return
    pair = parts > 1 and (_forced_split == 3 or (
        # Below ~10 µs of work a loop, a second thread costs more than it saves.
        _forced_split < 0 and 2.0 * fwd.T * fwd.B * fwd.GH * fwd.H >= 2e6))
    if not pair:        # one after the other, each split as its size says
        _run_loop(fwd, backward, parts)
        if not fwd.c.abort:
            _run_loop(rev, backward, parts)
        return
    _kernel_runs[crnn_gemm_level() + 1 if fwd.nr else 0] += 2
    if fwd.c.net.is_double == 0:
        _cell_runs[_cell_level] += 2
    S.loop[0] = fwd
    S.loop[1] = rev
    S.n = 2
    S.backward = backward
    k = _chunk_steps(fwd)
    t = 0
    while t < fwd.T:
        _set_chunk(fwd, backward, t, k)
        _set_chunk(rev, backward, t, k)
        t += k
        S.next = 0
        crnn_pool_run(_loops_task, &S, 2, 1)
        _chunks_run += 1
        if _interrupted(fwd.c):
            return
