# The all-steps work of a call, as regions: a list of jobs (a BLAS product, a
# gather, a packing of W_h, ...), each cut into chunks of rows that crnn's
# threads take from a shared counter. Every chunk of a product is one
# single-threaded BLAS call; a part that has not started when the others
# ran out of chunks is cancelled rather than waited for (_pool.h).

cdef enum:
    _MAXJOBS = 24
    _MAXCHUNKS = 256

# Below about this much work a region runs on the calling thread: dispatching
# it to a worker (~1-2 µs) would cost more than it saves.
cdef double _PART_FLOPS = 2e6


ctypedef void (*_chunk_fn)(Call* c, const Job* j, Py_ssize_t i0, Py_ssize_t i1,
                           int part) noexcept nogil

ctypedef struct Job:
    _chunk_fn fn
    Py_ssize_t rows         # the rows (or, split_n, columns) the chunks cut
    double cost             # flops (or element moves) per row
    Py_ssize_t min_rows     # the smallest chunk worth a BLAS call
    double repack           # a product: elements every chunk packs again (0: none)
    bint split_n            # a product: chunks are columns of C, not rows
    # a product: rows [i0, i1) of C = op(A)·op(B) + beta·C, then + op(A2)·op(B2)
    bint ta, tb
    Py_ssize_t m, n, k, k2
    const char* A
    const char* B
    const char* A2
    const char* B2
    char* C
    Py_ssize_t lda, ldb, lda2, ldb2, ldc
    double beta
    # the other jobs: an index map, a mask, widths, a direction
    const Py_ssize_t* idx
    const char* M
    Py_ssize_t w, arg

ctypedef struct Chunk:
    int job
    Py_ssize_t i0, i1

ctypedef struct Region:
    Call* c
    Job jobs[_MAXJOBS]
    int njobs
    Chunk chunks[_MAXCHUNKS]
    int nchunks, next


cdef inline Job* _job(Region* R, _chunk_fn fn, Py_ssize_t rows, double cost,
                      Py_ssize_t min_rows) noexcept nogil:
    """A new job of region R (zeroed but for these fields)."""
    cdef Job* j = &R.jobs[R.njobs]
    memset(j, 0, sizeof(Job))
    j.fn = fn
    j.rows = rows
    j.cost = cost
    j.min_rows = max(min_rows, 1)
    R.njobs += 1
    return j


cdef inline Job* _gemm_job(Region* R, bint ta, bint tb, Py_ssize_t m, Py_ssize_t n,
                           Py_ssize_t k, const char* A, Py_ssize_t lda, const char* B,
                           Py_ssize_t ldb, double beta, char* C, Py_ssize_t ldc) noexcept nogil:
    """C (m×n, row-major) = op(A)·op(B) + beta·C, as a job of R.

    Each chunk is one BLAS call, which packs both of its operands: cut along
    rows of C, every chunk packs all of op(B) again; along columns, all of
    op(A). So the chunks cut the longer side, and repack the smaller operand.
    """
    cdef bint by_cols = n > m
    cdef Job* j = _job(R, _gemm_chunk, n if by_cols else m, 2.0 * (m if by_cols else n) * k, 16)
    j.split_n = by_cols
    j.repack = <double>k * (m if by_cols else n)
    j.m = m
    j.ta = ta
    j.tb = tb
    j.n = n
    j.k = k
    j.A = A
    j.lda = lda
    j.B = B
    j.ldb = ldb
    j.beta = beta
    j.C = C
    j.ldc = ldc
    return j


cdef void _run(Region* R) noexcept nogil:
    """Cut R's jobs into chunks and run them over crnn's threads; R is then empty."""
    cdef double total = 0, target, f
    cdef Py_ssize_t rows, step, i0, nch
    cdef int i, parts
    for i in range(R.njobs):
        total += R.jobs[i].rows * R.jobs[i].cost
    parts = <int>min(<double>R.c.parts, max(1.0, total / _PART_FLOPS))
    R.nchunks = 0
    R.next = 0
    # A few chunks per part, so that a part that falls behind (or never
    # starts: a busy core) leaves its share to the others.
    target = total / (4 * parts) if parts > 1 else total + 1
    for i in range(R.njobs):
        rows = R.jobs[i].rows
        if rows <= 0:
            continue
        f = rows * R.jobs[i].cost
        nch = <Py_ssize_t>min(max(f / target, 1.0), max(rows // R.jobs[i].min_rows, 1))
        if R.jobs[i].repack > 0 and parts > 1:
            # Packing an element costs about what 1800 flops of the product do
            # (measured through scipy's OpenBLAS: 8 row chunks of a 1600×1760
            # by 1760×1760 product took 17% longer than one): cut no finer
            # than keeps that under ~5%, but into one chunk per part at least.
            nch = min(nch, max(<Py_ssize_t>(f / (R.jobs[i].repack * 1800.0)), parts))
        nch = min(nch, (_MAXCHUNKS - R.nchunks) - (R.njobs - 1 - i))
        nch = max(nch, 1)
        step = (rows + nch - 1) // nch
        i0 = 0
        while i0 < rows:
            R.chunks[R.nchunks].job = i
            R.chunks[R.nchunks].i0 = i0
            R.chunks[R.nchunks].i1 = min(i0 + step, rows)
            R.nchunks += 1
            i0 += step
    if parts > 1 and R.nchunks > 1:
        crnn_pool_run(_region_task, R, min(parts, R.nchunks), 1)
    else:
        _region_task(R, 0, 1)
    R.njobs = 0


cdef void _region_task(void* ctx, int part, int nparts) noexcept nogil:
    cdef Region* R = <Region*>ctx
    cdef int k
    cdef const Chunk* ch
    while True:
        k = crnn_claim(&R.next)
        if k >= R.nchunks:
            return
        ch = &R.chunks[k]
        R.jobs[ch.job].fn(R.c, &R.jobs[ch.job], ch.i0, ch.i1, part)


# -- the chunks ---------------------------------------------------------------------------

cdef void _gemm_chunk(Call* c, const Job* j, Py_ssize_t i0, Py_ssize_t i1,
                      int part) noexcept nogil:
    if c.net.is_double:
        _gemm_rows(j, i0, i1, <double>0)
    else:
        _gemm_rows(j, i0, i1, <float>0)


cdef inline void _gemm_rows(const Job* j, Py_ssize_t i0, Py_ssize_t i1,
                            floating kind) noexcept nogil:
    """Rows [i0, i1) of C (columns with split_n) of op(A)·op(B) [+ op(A2)·op(B2)]."""
    # Rows of op(A) are rows of A, or its columns when transposed; columns of
    # op(B) are columns of B, or its rows when transposed.
    cdef Py_ssize_t m = j.m if j.split_n else i1 - i0
    cdef Py_ssize_t n = i1 - i0 if j.split_n else j.n
    cdef Py_ssize_t ra = 0 if j.split_n else (i0 if j.ta else i0 * j.lda)
    cdef Py_ssize_t cb = (i0 * j.ldb if j.tb else i0) if j.split_n else 0
    cdef Py_ssize_t cb2 = (i0 * j.ldb2 if j.tb else i0) if j.split_n else 0
    cdef Py_ssize_t ra2 = 0 if j.split_n else (i0 if j.ta else i0 * j.lda2)
    cdef Py_ssize_t oc = i0 if j.split_n else i0 * j.ldc
    _blas.gemm(j.ta, j.tb, <int>m, <int>n, <int>j.k, <floating>1,
               <const floating*>j.A + ra, <int>j.lda, <const floating*>j.B + cb, <int>j.ldb,
               <floating>j.beta, <floating*>j.C + oc, <int>j.ldc)
    if j.A2 != NULL:
        _blas.gemm(j.ta, j.tb, <int>m, <int>n, <int>j.k2, <floating>1,
                   <const floating*>j.A2 + ra2, <int>j.lda2, <const floating*>j.B2 + cb2,
                   <int>j.ldb2, <floating>1, <floating*>j.C + oc, <int>j.ldc)


cdef void _gather_chunk(Call* c, const Job* j, Py_ssize_t i0, Py_ssize_t i1,
                        int part) noexcept nogil:
    """C[p, :w] = A[idx[p], :w] (row strides ldc, lda): rows put in another order."""
    cdef Py_ssize_t p, es = sizeof(double) if c.net.is_double else sizeof(float)
    for p in range(i0, i1):
        memcpy(j.C + p * j.ldc * es, j.A + j.idx[p] * j.lda * es, j.w * es)


cdef void _gather_tokens_chunk(Call* c, const Job* j, Py_ssize_t i0, Py_ssize_t i1,
                               int part) noexcept nogil:
    """tok[p] = tokens[idx[p]]: token ids in the reverse direction's order."""
    cdef Py_ssize_t p
    cdef Py_ssize_t* out = <Py_ssize_t*>j.C
    for p in range(i0, i1):
        out[p] = c.tokens[j.idx[p]]


cdef void _embed_chunk(Call* c, const Job* j, Py_ssize_t i0, Py_ssize_t i1,
                       int part) noexcept nogil:
    """C[p] = W_x[:, tok[p]]: the input projection of one-hot inputs, as a gather."""
    if c.net.is_double:
        _embed_rows(j, i0, i1, <double>0)
    else:
        _embed_rows(j, i0, i1, <float>0)


cdef inline void _embed_rows(const Job* j, Py_ssize_t i0, Py_ssize_t i1,
                             floating kind) noexcept nogil:
    cdef Py_ssize_t p, r, tok, D = j.ldb, GH = j.n
    cdef const floating* W = <const floating*>j.B
    cdef floating* row
    for p in range(i0, i1):
        tok = j.idx[p]
        row = <floating*>j.C + p * GH
        for r in range(GH):
            row[r] = W[r * D + tok]


cdef void _unembed_chunk(Call* c, const Job* j, Py_ssize_t i0, Py_ssize_t i1,
                         int part) noexcept nogil:
    """dW_x[r, tok[p]] = Σ_p G[p, r] for rows r in [i0, i1): the transpose of the gather.
    G is dA (width lda) for r < w and then E (width lda2)."""
    if c.net.is_double:
        _unembed_rows(j, i0, i1, <double>0)
    else:
        _unembed_rows(j, i0, i1, <float>0)


cdef inline void _unembed_rows(const Job* j, Py_ssize_t i0, Py_ssize_t i1,
                               floating kind) noexcept nogil:
    cdef Py_ssize_t p, r, D = j.ldc, P = j.k
    cdef floating* dW = <floating*>j.C
    cdef const floating* G
    for r in range(i0, i1):
        memset(dW + r * D, 0, D * sizeof(floating))
    for p in range(P):
        G = <const floating*>j.A + p * j.lda
        for r in range(i0, min(i1, j.w)):
            dW[r * D + j.idx[p]] += G[r]
        if i1 > j.w:
            G = <const floating*>j.A2 + p * j.lda2
            for r in range(max(i0, j.w), i1):
                dW[r * D + j.idx[p]] += G[r - j.w]


cdef void _pack_chunk(Call* c, const Job* j, Py_ssize_t i0, Py_ssize_t i1,
                      int part) noexcept nogil:
    """Pack W_h for the kernel: gates [i0, i1) of W_hᵀ (j.w = 0) or all of W_h (j.w = 1)."""
    cdef const Net* n = c.net
    cdef Py_ssize_t H = n.H, nr = _nr(c), g, es = sizeof(double) if n.is_double else sizeof(float)
    cdef Py_ssize_t block = _panels(H, nr) * nr * H
    for g in range(i0, i1):
        if j.w == 0:
            # B(p, q) = W_h[g·H + q, p]: panels of gate g's columns of W_hᵀ
            if n.is_double:
                crnn_dpack(<const double*>j.A + g * H * H, H, H, 1, H, <double*>j.C + g * block)
            else:
                crnn_spack(<const float*>j.A + g * H * H, H, H, 1, H, <float*>j.C + g * block)
        elif n.is_double:
            crnn_dpack(<const double*>j.A, n.GH, H, H, 1, <double*>j.C)
        else:
            crnn_spack(<const float*>j.A, n.GH, H, H, 1, <float*>j.C)


cdef void _scatter_add_chunk(Call* c, const Job* j, Py_ssize_t i0, Py_ssize_t i1,
                             int part) noexcept nogil:
    """C[idx[p]] += A[p] (w values a row): the reverse direction's rows back in time order."""
    if c.net.is_double:
        _scatter_add_rows(j, i0, i1, <double>0)
    else:
        _scatter_add_rows(j, i0, i1, <float>0)


cdef inline void _scatter_add_rows(const Job* j, Py_ssize_t i0, Py_ssize_t i1,
                                   floating kind) noexcept nogil:
    cdef Py_ssize_t p, q
    cdef floating* dst
    cdef const floating* src
    for p in range(i0, i1):
        dst = <floating*>j.C + j.idx[p] * j.ldc
        src = <const floating*>j.A + p * j.lda
        for q in range(j.w):
            dst[q] += src[q]


cdef void _scale_chunk(Call* c, const Job* j, Py_ssize_t i0, Py_ssize_t i1,
                       int part) noexcept nogil:
    """C[p] = A[p] ⊙ M[p] (w values a row; C may be A): dropout, and its derivative."""
    if c.net.is_double:
        _scale_rows(j, i0, i1, <double>0)
    else:
        _scale_rows(j, i0, i1, <float>0)


cdef inline void _scale_rows(const Job* j, Py_ssize_t i0, Py_ssize_t i1,
                             floating kind) noexcept nogil:
    cdef Py_ssize_t q, lo = i0 * j.w, hi = i1 * j.w
    cdef floating* C = <floating*>j.C
    cdef const floating* A = <const floating*>j.A
    cdef const floating* M = <const floating*>j.M
    for q in range(lo, hi):
        C[q] = A[q] * M[q]
