# The buffers of a call: laid out in one block of memory that is reused from
# call to call (a fresh numpy array per call costs page faults: ~15% of a
# step at size "small" in an earlier version).

cdef extern from "_cells.h" nogil:
    int crnn_cells_best()

cdef extern from *:
    """
    #include <stdint.h>
    /* Built with AddressSanitizer (CI's sanitizer build), the slack around a
     * block and a 64-byte red zone after every buffer of a workspace are
     * poisoned, so that an overrun from one buffer into the next is reported;
     * otherwise these compile to nothing and the layout is unchanged. */
    #if defined(__SANITIZE_ADDRESS__)
    #include <sanitizer/asan_interface.h>
    #define CRNN_REDZONE 64
    #else
    #define ASAN_POISON_MEMORY_REGION(a, n) ((void)(a), (void)(n))
    #define ASAN_UNPOISON_MEMORY_REGION(a, n) ((void)(a), (void)(n))
    #define CRNN_REDZONE 0
    #endif
    /* 64-byte aligned blocks from PyMem_RawMalloc, so that tracemalloc and
     * Python's memory tools see crnn's workspaces; the offset to the raw
     * block is kept just before the aligned one. */
    static void *crnn_aligned_alloc(size_t n)
    {
        char *raw = (char *)PyMem_RawMalloc(n + 64 + sizeof(void *));
        char *p;
        if (raw == NULL)
            return NULL;
        p = (char *)(((uintptr_t)(raw + sizeof(void *)) + 63) & ~(uintptr_t)63);
        ((void **)p)[-1] = raw;
        ASAN_POISON_MEMORY_REGION(raw, (size_t)(p - raw) - sizeof(void *));
        ASAN_POISON_MEMORY_REGION(p + n, (size_t)(raw + n + 64 + sizeof(void *) - (p + n)));
        return p;
    }
    static void crnn_aligned_free(void *p)
    {
        if (p != NULL)
            PyMem_RawFree(((void **)p)[-1]);
    }
    """
    void* crnn_aligned_alloc(size_t n) nogil
    void crnn_aligned_free(void* p) nogil
    void ASAN_POISON_MEMORY_REGION(const void* p, size_t n) nogil
    void ASAN_UNPOISON_MEMORY_REGION(const void* p, size_t n) nogil
    enum: CRNN_REDZONE

# The per-step product: crnn's kernel (1) or BLAS (0); the float32 cells' ISA level.
cdef int _kernel = CRNN_HAVE_GEMM
cdef int _cell_level = crnn_cells_best()


@cython.auto_pickle(False)
cdef class Workspace:
    """One call's buffers (a block of 64-byte aligned memory, grown on demand).

    The engine keeps one per model and reuses it; a call that finds it in use
    (another thread's call on the same model) gets a fresh one. The layer
    API's forward returns its own, holding what backward needs.
    """
    cdef char* mem
    cdef Py_ssize_t size
    cdef bint busy
    cdef public object keep      # arrays the stored pointers refer to (layer API)
    cdef public Py_ssize_t T, B  # the call the contents belong to (layer API)
    cdef public int flags

    def __dealloc__(self):
        if self.mem != NULL:
            crnn_aligned_free(self.mem)

    cdef char* reserve(self, Py_ssize_t nbytes) except NULL:
        if nbytes > self.size or self.mem == NULL:
            if self.mem != NULL:
                crnn_aligned_free(self.mem)
                self.mem = NULL
                self.size = 0
            self.mem = <char*>crnn_aligned_alloc(max(nbytes, 64))
            if self.mem == NULL:
                raise MemoryError(f"crnn: cannot allocate {nbytes} bytes of workspace")
            self.size = max(nbytes, 64)
        # (sanitizer builds) this call's layout poisons its own red zones
        ASAN_UNPOISON_MEMORY_REGION(self.mem, nbytes)
        ASAN_POISON_MEMORY_REGION(self.mem + nbytes, self.size - nbytes)
        return self.mem

    @property
    def nbytes(self):
        return self.size


# Below this many rows in a call (T·B), packing W_h costs more than the kernel
# gains over BLAS: packing copies W_h once, the product reads it T·B times. At
# T·B = 1 (step, generate) BLAS makes generation 2.6× (H = 100) to 17× (H = 512)
# faster; at char size (T·B = 25) the two are level.
cdef Py_ssize_t _PACK_MIN_ROWS = 8


cdef inline Py_ssize_t _nr(const Call* c) noexcept nogil:
    """The panel width of the packed W_h (0: the steps go to BLAS)."""
    if not _kernel or c.T * c.B < _PACK_MIN_ROWS:
        return 0
    return crnn_gemm_dnr() if c.net.is_double else crnn_gemm_snr()


cdef inline Py_ssize_t _panels(Py_ssize_t n, Py_ssize_t nr) noexcept nogil:
    return (n + nr - 1) // nr


cdef Py_ssize_t _layout(Call* c, char* base, Py_ssize_t nr) noexcept nogil:
    """Place every buffer of call ``c`` in ``base``, or with base NULL only
    measure; returns the bytes needed. Shapes are in the Call and DirBuf
    comments."""
    cdef const Net* n = c.net
    cdef const crnn_cell* cell = n.cell
    cdef Py_ssize_t es = sizeof(double) if n.is_double else sizeof(float)
    cdef Py_ssize_t T = c.T, B = c.B, TB = c.T * c.B, H = n.H, GH = n.GH, Hd = n.Hd
    cdef Py_ssize_t off = 0, l, d, i, wide = max(Hd, n.D), parts = c.parts
    cdef DirBuf scratch
    cdef DirBuf* b = &scratch
    cdef char* y
    cdef char* bufs = _take(base, &off, n.L * n.dirs * sizeof(DirBuf))
    cdef char* xin = _take(base, &off, n.L * sizeof(char*))
    cdef char* ys = _take(base, &off, n.L * sizeof(char*))
    if base != NULL:
        c.buf = <DirBuf*>bufs
        c.Xin = <char**>xin
        c.Y = <char**>ys
    for i in range(n.L * n.dirs):
        l, d = i // n.dirs, i % n.dirs
        if base != NULL:
            b = &c.buf[i]
        memset(b, 0, sizeof(DirBuf))
        b.A = _take(base, &off, TB * GH * es)
        if cell.sep_h:
            b.AH = _take(base, &off, B * GH * es)
        b.Hs = _take(base, &off, (T + 1) * B * H * es)
        if cell.has_c:
            b.Cs = _take(base, &off, (T + 1) * B * H * es)
        if cell.extra:
            b.E = _take(base, &off, TB * cell.extra * H * es)
        if d == 1 and (l > 0 or c.tokens == NULL):
            b.X = _take(base, &off, TB * n.ld[i].Din * es)
        if d == 1 and l == 0 and c.tokens != NULL:
            b.tok = <Py_ssize_t*>_take(base, &off, TB * sizeof(Py_ssize_t))
        if nr:
            b.Pf = _take(base, &off, n.G * _panels(H, nr) * nr * H * es)
            if c.backward:
                b.Pb = _take(base, &off, _panels(H, nr) * nr * GH * es)
        if c.backward:
            b.dh = _take(base, &off, B * H * es)
            if cell.has_c:
                b.dc = _take(base, &off, B * H * es)
            if d == 1:
                b.up = _take(base, &off, TB * H * es)
            b.acc = <double*>_take(base, &off, parts * (GH + cell.extra * H) * sizeof(double))
    for l in range(n.L):
        # A layer's outputs are put together when both directions are, or
        # when dropout scales them for the next layer.
        y = NULL
        if n.dirs == 2 or (c.masks != NULL and l < n.L - 1):
            y = _take(base, &off, TB * Hd * es)
        if base != NULL:
            c.Y[l] = y
            if l == 0:
                c.Xin[0] = <char*>c.X
            elif c.Y[l - 1] != NULL:
                c.Xin[l] = c.Y[l - 1]
            else:
                c.Xin[l] = c.buf[(l - 1) * n.dirs].Hs + B * H * es
    if n.O:
        y = _take(base, &off, (TB if c.per_step or c.y != NULL else B) * n.O * es)
        if base != NULL:
            c.Z = y
        y = _take(base, &off, B * Hd * es)
        if base != NULL:
            c.Hn = y
    if c.backward:
        y = _take(base, &off, TB * Hd * es)
        if base != NULL:
            c.dY = y
        y = _take(base, &off, TB * wide * es)
        if base != NULL:
            c.dXl = y
        y = _take(base, &off, TB * wide * es) if n.dirs == 2 else NULL
        if base != NULL:
            c.dXr = y
        y = _take(base, &off, parts * T * sizeof(double))
        if base != NULL:
            c.normp = <double*>y
    y = _take(base, &off, parts * (n.O + 1) * sizeof(double))
    if base != NULL:
        c.sums = <double*>y
    return off


cdef inline char* _take(char* base, Py_ssize_t* off, Py_ssize_t nbytes) noexcept nogil:
    """The next 64-byte aligned block of ``nbytes`` (NULL when only measuring)."""
    cdef char* p = base + off[0] if base != NULL else NULL
    cdef Py_ssize_t span = ((nbytes + 63) & ~(<Py_ssize_t>63)) + CRNN_REDZONE
    if p != NULL:
        ASAN_POISON_MEMORY_REGION(p + nbytes, span - nbytes)
    off[0] += span
    return p
