# What Python calls: an Engine per model (its shape and parameter layout),
# and the module's switches. Arguments are trusted: the facade (model.py,
# layers.py, _checks.py) has checked every shape, dtype and range, and keeps
# every array alive for the duration of the call.

cdef char* _ptr(object a, bint writable) except? NULL:
    """The data pointer of a C-contiguous buffer (None: NULL)."""
    cdef Py_buffer view
    cdef char* p
    if a is None:
        return NULL
    PyObject_GetBuffer(a, &view, PyBUF_C_CONTIGUOUS | (PyBUF_WRITABLE if writable else 0))
    p = <char*>view.buf
    PyBuffer_Release(&view)
    return p


cdef void _forward_all(Call* c) noexcept nogil:
    cdef Region R
    R.c = c
    R.njobs = 0
    _stack_forward(c, &R)
    if c.y != NULL and not c.abort:
        _head_forward(c, &R, False)


cdef void _loss_all(Call* c) noexcept nogil:
    cdef Region R
    cdef double t0
    R.c = c
    R.njobs = 0
    _stack_forward(c, &R)
    if c.abort:
        return
    t0 = crnn_seconds() if _profiling else 0
    _head_forward(c, &R, True)
    _lap(2, &t0)
    if c.backward:
        _head_backward(c, &R)
        _lap(3, &t0)
        _stack_backward(c, &R, c.dY if c.per_step else NULL)


cdef void _backward_all(Call* c) noexcept nogil:
    cdef Region R
    R.c = c
    R.njobs = 0
    _stack_backward(c, &R, c.dOut)


@cython.auto_pickle(False)
cdef class Engine:
    """The compiled network of one model: cell, layers, directions, sizes, dtype.

    ``layout`` lists ``(name, offset, shape)`` of every parameter in the flat
    parameter vector of ``size`` elements (offsets are multiples of 16).
    """
    cdef Net net
    cdef LayerDir* lds
    cdef Workspace ws
    cdef list spare         # tapes' workspaces back from stack_backward, for the next forward
    cdef readonly list layout
    cdef readonly Py_ssize_t size

    def __init__(self, str cell, Py_ssize_t num_layers, bint bidirectional,
                 Py_ssize_t input_size, Py_ssize_t hidden_size, Py_ssize_t output_size,
                 bint is_double):
        cdef Net* n = &self.net
        cdef Py_ssize_t l, d, i
        if self.lds != NULL:
            raise TypeError("Engine: already initialised")
        n.cell = &crnn_cells[CELLS[cell]]
        n.L, n.dirs, n.D, n.H, n.O = num_layers, 2 if bidirectional else 1, input_size, \
            hidden_size, output_size
        n.G = n.cell.gates
        n.GH, n.Hd, n.is_double = n.G * n.H, n.dirs * n.H, is_double
        self.lds = <LayerDir*>malloc(n.L * n.dirs * sizeof(LayerDir))
        if self.lds == NULL:
            raise MemoryError()
        n.ld = self.lds
        self.ws = Workspace()
        self.spare = []
        self.layout = []
        offset = 0

        def add(name, shape):
            nonlocal offset
            at = offset
            size = 1
            for s in shape:
                size *= s
            self.layout.append((name, at, shape))
            offset += (size + 15) // 16 * 16
            return at

        for l in range(n.L):
            for d in range(n.dirs):
                i = l * n.dirs + d
                sfx = ("" if l == 0 else f"_l{l}") + ("_reverse" if d else "")
                n.ld[i].Din = n.D if l == 0 else n.Hd
                n.ld[i].wx = add("W_x" + sfx, (n.GH, n.ld[i].Din))
                n.ld[i].wh = add("W_h" + sfx, (n.GH, n.H))
                n.ld[i].bh = add("b_h" + sfx, (n.GH,))
                n.ld[i].bx = add("b_x" + sfx, (n.GH,)) if n.cell.sep_h else -1
        n.wy = n.by = -1
        if n.O:
            n.wy = add("W_y", (n.O, n.Hd))
            n.by = add("b_y", (n.O,))
        self.size = offset

    def __dealloc__(self):
        free(self.lds)

    @property
    def workspace_bytes(self):
        """The size of the workspace kept for this model's calls (reused by each)."""
        return self.ws.size

    cdef Workspace _take_ws(self):
        if self.ws.busy:
            return Workspace()      # another thread's call is using ours
        self.ws.busy = True
        return self.ws

    cdef void _give_ws(self, Workspace ws):
        if ws is self.ws:
            ws.busy = False

    cdef int _prepare(self, Call* c, Workspace ws, Py_ssize_t T, Py_ssize_t B, int cap,
                      int parts, Py_ssize_t nr) except -1:
        """Size and place c's buffers in ws (parts, nr: a tape's, or -1 for now's)."""
        cdef char* base
        c.net = &self.net
        c.T, c.B = T, B
        if parts < 0:
            parts = max(1, min(crnn_pool_available(), cap, CRNN_POOL_MAX))
        c.parts = parts
        if nr < 0:
            nr = _nr(c)
        base = ws.reserve(_layout(c, NULL, nr))
        _layout(c, base, nr)
        return 0

    def forward(self, W, X, tokens, Py_ssize_t B, bs, rev, h0, c0, int output, y, h_last,
                c_last):
        """Outputs y (T·B, O) (or nothing: None) and final states, no gradients."""
        cdef Call c
        cdef Workspace ws
        cdef int cap
        memset(&c, 0, sizeof(Call))
        c.W, c.X, c.tokens = _ptr(W, False), _ptr(X, False), <Py_ssize_t*>_ptr(tokens, False)
        c.bs, c.rev = <Py_ssize_t*>_ptr(bs, False), <Py_ssize_t*>_ptr(rev, False)
        c.h0, c.c0 = _ptr(h0, False), _ptr(c0, False)
        c.y, c.h_last, c.c_last = _ptr(y, True), _ptr(h_last, True), _ptr(c_last, True)
        c.per_step = True
        c.output = output
        ws = self._take_ws()
        cap = crnn_blas_enter()
        try:
            self._prepare(&c, ws, len(bs), B, cap, -1, -1)
            _start_checks(&c)
            with nogil:
                _forward_all(&c)
            _raise_if_interrupted(&c)
        finally:
            crnn_blas_leave()
            self._give_ws(ws)

    def loss(self, W, dW, X, tokens, Py_ssize_t B, bs, rev, h0, c0, masks, int output, bint per_step,
             classes, values, double scale, Py_ssize_t lo, Py_ssize_t hi, h_last, c_last,
             norms):
        """The loss (scaled) and, when dW is given, every gradient into dW."""
        cdef Call c
        cdef Workspace ws
        cdef int cap
        memset(&c, 0, sizeof(Call))
        c.W, c.dW = _ptr(W, False), _ptr(dW, True)
        c.X, c.tokens = _ptr(X, False), <Py_ssize_t*>_ptr(tokens, False)
        c.bs, c.rev = <Py_ssize_t*>_ptr(bs, False), <Py_ssize_t*>_ptr(rev, False)
        c.h0, c.c0, c.masks = _ptr(h0, False), _ptr(c0, False), _ptr(masks, False)
        c.output, c.per_step = output, per_step
        c.classes, c.values = <Py_ssize_t*>_ptr(classes, False), _ptr(values, False)
        c.scale, c.lo, c.hi = scale, lo, hi
        c.h_last, c.c_last = _ptr(h_last, True), _ptr(c_last, True)
        c.norms = <double*>_ptr(norms, True)
        c.backward = dW is not None
        ws = self._take_ws()
        cap = crnn_blas_enter()
        try:
            self._prepare(&c, ws, len(bs), B, cap, -1, -1)
            _start_checks(&c)
            with nogil:
                _loss_all(&c)
            _raise_if_interrupted(&c)
        finally:
            crnn_blas_leave()
            self._give_ws(ws)
        return c.loss

    def train(self, W, dW, X, tokens, Py_ssize_t B, bs, rev, h0, c0, masks, int output,
              bint per_step, classes, values, double scale, Py_ssize_t lo, Py_ssize_t hi,
              h_last, c_last, int kind, s0, s1, s2, hyper, bint first, double clip_value,
              double clip_norm):
        """One whole training step: the loss (scaled), every gradient into dW, then
        clipping and the optimizer's update of W (kind: UPDATE_*; state buffers s0-s2
        laid out like W, or None; hyper: its hyperparameters) in the same call, with
        no Python between them. Returns (loss, norm, updated): nothing is updated when
        the loss or a gradient is not finite, nor when a signal stopped the call."""
        cdef Call c
        cdef Update u
        cdef Workspace ws
        cdef int cap, i
        cdef bint updated = False
        memset(&c, 0, sizeof(Call))
        memset(&u, 0, sizeof(Update))
        c.W, c.dW = _ptr(W, False), _ptr(dW, True)
        c.X, c.tokens = _ptr(X, False), <Py_ssize_t*>_ptr(tokens, False)
        c.bs, c.rev = <Py_ssize_t*>_ptr(bs, False), <Py_ssize_t*>_ptr(rev, False)
        c.h0, c.c0, c.masks = _ptr(h0, False), _ptr(c0, False), _ptr(masks, False)
        c.output, c.per_step = output, per_step
        c.classes, c.values = <Py_ssize_t*>_ptr(classes, False), _ptr(values, False)
        c.scale, c.lo, c.hi = scale, lo, hi
        c.h_last, c.c_last = _ptr(h_last, True), _ptr(c_last, True)
        c.backward = True
        u.kind, u.is_double, u.n = kind, self.net.is_double, self.size
        u.p, u.g = _ptr(W, True), c.dW
        u.s0, u.s1, u.s2 = _ptr(s0, True), _ptr(s1, True), _ptr(s2, True)
        if len(hyper) > 8:
            raise ValueError(f"hyper: at most 8 hyperparameters, got {len(hyper)}")
        for i in range(len(hyper)):
            u.h[i] = hyper[i]
        u.first, u.clip_value, u.clip_norm = first, clip_value, clip_norm
        ws = self._take_ws()
        cap = crnn_blas_enter()
        try:
            self._prepare(&c, ws, len(bs), B, cap, -1, -1)
            _start_checks(&c)
            with nogil:
                _loss_all(&c)
                if not c.abort and isfinite(c.loss):
                    updated = _apply_update(&u)
            _raise_if_interrupted(&c)
        finally:
            crnn_blas_leave()
            self._give_ws(ws)
        return c.loss, u.norm, updated

    def stack_forward(self, W, X, tokens, Py_ssize_t B, bs, rev, h0, c0, masks, out, h_last,
                      c_last):
        """The layers alone: outputs and final states; returns the tape for stack_backward."""
        cdef Call c
        # A used tape's memory, when there is one: its pages are mapped already (a fresh
        # block of tens of MiB costs a page fault per 4 KiB, a third of an LSTM's forward).
        cdef Workspace tape = self.spare.pop() if self.spare else Workspace()
        cdef int cap
        memset(&c, 0, sizeof(Call))
        c.W, c.X, c.tokens = _ptr(W, False), _ptr(X, False), <Py_ssize_t*>_ptr(tokens, False)
        c.bs, c.rev = <Py_ssize_t*>_ptr(bs, False), <Py_ssize_t*>_ptr(rev, False)
        c.h0, c.c0, c.masks = _ptr(h0, False), _ptr(c0, False), _ptr(masks, False)
        c.out, c.h_last, c.c_last = _ptr(out, True), _ptr(h_last, True), _ptr(c_last, True)
        c.per_step = True
        c.backward = True
        cap = crnn_blas_enter()
        try:
            self._prepare(&c, tape, len(bs), B, cap, -1, -1)
            _start_checks(&c)
            with nogil:
                _forward_all(&c)
            _raise_if_interrupted(&c)
        finally:
            crnn_blas_leave()
        tape.T, tape.B, tape.flags = c.T, c.B, c.parts
        tape.keep = (X, tokens, bs, rev, masks, _nr(&c))
        return tape

    def stack_backward(self, Workspace tape, W, dW, dOut, dHn, dCn, dX, dh0, dc0):
        """BPTT from ∂L/∂outputs (and ∂L/∂ final states): gradients into dW, dX, dh0, dc0."""
        cdef Call c
        cdef int cap
        X, tokens, bs, rev, masks, nr = tape.keep
        memset(&c, 0, sizeof(Call))
        c.W, c.dW = _ptr(W, False), _ptr(dW, True)
        c.X, c.tokens = _ptr(X, False), <Py_ssize_t*>_ptr(tokens, False)
        c.bs, c.rev, c.masks = <Py_ssize_t*>_ptr(bs, False), <Py_ssize_t*>_ptr(rev, False), \
            _ptr(masks, False)
        c.dOut, c.dHn, c.dCn = _ptr(dOut, False), _ptr(dHn, False), _ptr(dCn, False)
        c.dX, c.dh0, c.dc0 = _ptr(dX, True), _ptr(dh0, True), _ptr(dc0, True)
        c.per_step = True
        c.backward = True
        cap = crnn_blas_enter()
        try:
            self._prepare(&c, tape, tape.T, tape.B, cap, tape.flags, nr)
            if _nr(&c) != nr:
                # The loops read the panel width again: it must be the forward's.
                raise RuntimeError("stack_backward: the per-step kernel changed since the "
                                   "forward pass (set_kernel between the two)")
            _start_checks(&c)
            with nogil:
                _backward_all(&c)
            _raise_if_interrupted(&c)
        finally:
            crnn_blas_leave()
            # Consumed (layers.Tape refuses a second backward).
            self.recycle(tape)

    def recycle(self, Workspace tape):
        """A tape that no backward will read: its memory serves the next stack_forward
        (two kept at most)."""
        tape.keep = None
        if len(self.spare) < 2:
            self.spare.append(tape)


# -- switches -----------------------------------------------------------------------------

_LEVELS = ("sse2", "avx2", "avx512")


def set_num_threads(int n):
    """Threads crnn's regions may use (the pool's cap, at most CRNN_POOL_MAX)."""
    crnn_pool_set_threads(n)


def pack_min_rows():
    """Calls with fewer rows (T·B) than this run their per-step products in BLAS."""
    return _PACK_MIN_ROWS


def max_threads():
    return CRNN_POOL_MAX if CRNN_HAVE_POOL else 1


def set_blas_control(size_t get, size_t set):
    """The BLAS's get/set-threads functions (addresses; 0 when it has none)."""
    crnn_blas_control(<void*>get, <void*>set)


def blas_threads():
    """The BLAS's thread count now (-1 when crnn cannot see it)."""
    return crnn_blas_threads()


def kernel():
    """The per-step product in use: "blas", or crnn's kernel's ISA level."""
    return crnn_gemm_name().decode() if _kernel else "blas"


def kernels():
    """Every choice set_kernel accepts on this machine and build."""
    return ("blas",) + (_LEVELS[:crnn_gemm_best() + 1] if CRNN_HAVE_GEMM else ())


def set_kernel(str name):
    """Run the per-step products in BLAS ("blas") or crnn's kernel at a level."""
    global _kernel
    if name not in kernels():
        raise ValueError(f"kernel: expected one of {kernels()}, got {name!r}")
    if name == "blas":
        _kernel = 0
    else:
        crnn_gemm_select(_LEVELS.index(name))
        _kernel = 1


def cell_level():
    return _LEVELS[_cell_level]


def cell_levels():
    return _LEVELS[:crnn_cells_best() + 1]


def set_cell_level(str name):
    """The ISA level of the float32 cells and softmax passes."""
    global _cell_level
    if name not in cell_levels():
        raise ValueError(f"cell level: expected one of {cell_levels()}, got {name!r}")
    _cell_level = _LEVELS.index(name)


def counters():
    """What ran: the pool's split tasks, stalls, degraded loops, cancelled parts and
    verdicts of contention (each a backoff on one thread);
    the loops run whole, by units, by rows and as direction pairs; loops by per-step
    product (kernel_blas, kernel_sse2, ...) and by float32 cell level (cells_sse2, ...)."""
    out = {"split_tasks": crnn_pool_counter(0), "stalls": crnn_pool_counter(1),
           "degraded": crnn_pool_counter(2), "cancelled": crnn_pool_counter(3),
           "contended": crnn_pool_counter(4),
           "whole": _runs[0], "units": _runs[1], "rows": _runs[2], "pairs": _runs[3],
           "kernel_blas": _kernel_runs[0]}
    for i, name in enumerate(_LEVELS):
        out["kernel_" + name] = _kernel_runs[i + 1]
        out["cells_" + name] = _cell_runs[i]
    return out


_SPLITS = {None: -1, "whole": _WHOLE, "units": _UNITS, "rows": _ROWS, "pairs": 3}


def force_split(name):
    """Tests: run every loop whole, by units, by rows, or both directions as a pair
    (None: choose by size, the default)."""
    global _forced_split
    if name not in _SPLITS:
        raise ValueError(f"split: expected one of {list(_SPLITS)}, got {name!r}")
    _forced_split = _SPLITS[name]


def test_stall(long long ns, long long count=1 << 40):
    """Tests: a worker sleeps ns nanoseconds before each of its next ``count`` barriers."""
    crnn_pool_test_stall(ns, count)


def calm():
    """Forget any contention seen: use threads again at once."""
    crnn_pool_calm()


def profile(bint on):
    """Accumulate the time of each phase of every call (see phases())."""
    global _profiling
    _profiling = on


def phases():
    """Seconds spent in each phase (PHASES) since the last call; resets them."""
    out = {name: _phase_time[i] for i, name in enumerate(PHASES)}
    for i in range(len(PHASES)):
        _phase_time[i] = 0
    return out


def chunks_run():
    """Chunks of time loops run so far (tests: did a loop run in pieces, or stop early)."""
    return _chunks_run


def set_chunk_flops(double flops):
    """The work of one chunk of a time loop (tests cut loops into single steps with 1)."""
    global _CHUNK_FLOPS
    if not flops > 0:
        raise ValueError(f"flops: expected a number > 0, got {flops}")
    _CHUNK_FLOPS = flops


def chunk_flops():
    return _CHUNK_FLOPS
