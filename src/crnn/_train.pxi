# The engine's whole training step, after the loss and gradients: gradient
# clipping and the optimizer's update over the flat parameter vector (the rules:
# _update.pxi). The gaps between the arrays of the flat vectors hold zeros in
# the parameters, the gradients and the state, and every rule keeps them 0.

cdef enum:
    UPDATE_SGD = 0
    UPDATE_ADAGRAD = 1
    UPDATE_RMSPROP = 2
    UPDATE_ADAM = 3


cdef struct Update:
    # One optimizer step over n values: parameters p, gradients g (clipped in
    # place) and up to three state buffers (NULL when unused), as below.
    int kind
    bint is_double
    Py_ssize_t n
    char* p
    char* g
    char* s0        # SGD: momentum; Adagrad: sum; RMSprop: square_avg; Adam: exp_avg
    char* s1        # RMSprop: grad_avg (centered); Adam: exp_avg_sq
    char* s2        # RMSprop: momentum buffer
    double h[8]     # hyperparameters, in the order of the update functions' arguments
    bint first      # SGD: the momentum buffer's first step
    double clip_value   # <= 0: none
    double clip_norm    # < 0: none
    double norm     # out: the gradients' norm after value clipping, before clip_norm


cdef void _update_typed(Update* u, floating* p, floating* g, floating* s0, floating* s1,
                        floating* s2) noexcept nogil:
    cdef double scale = 1.0
    cdef double* h = u.h
    if u.clip_norm >= 0:
        # clip_grad_norm's coefficient, exactly: min(1, max_norm / (norm + 1e-6))
        scale = u.clip_norm / (u.norm + 1e-6)
        if scale >= 1.0:
            scale = 1.0
    if u.kind == UPDATE_SGD:
        _sgd(p, g, s0, u.n, h[0], h[1], h[2], h[3], h[4] != 0, u.first, scale)
    elif u.kind == UPDATE_ADAGRAD:
        _adagrad(p, g, s0, u.n, h[0], h[1], h[2], scale)
    elif u.kind == UPDATE_RMSPROP:
        _rmsprop(p, g, s0, s1, s2, u.n, h[0], h[1], h[2], h[3], h[4], h[5] != 0, scale)
    else:
        _adam(p, g, s0, s1, u.n, h[0], h[1], h[2], h[3], h[4], h[5], h[6], scale)


cdef bint _apply_update(Update* u) noexcept nogil:
    """Clip the gradients (clip_value in place), then apply the optimizer's step with
    clip_norm's coefficient; False, and the parameters and state untouched, when a
    gradient is NaN or infinite (found before clipping: clipping would make an
    infinite one finite)."""
    u.norm = _norm(<double*>u.g, u.n) if u.is_double else _norm(<float*>u.g, u.n)
    if not isfinite(u.norm):
        return False
    if u.clip_value > 0:
        if u.is_double:
            _clamp(<double*>u.g, u.n, u.clip_value)
            u.norm = _norm(<double*>u.g, u.n)
        else:
            _clamp(<float*>u.g, u.n, u.clip_value)
            u.norm = _norm(<float*>u.g, u.n)
    if u.is_double:
        _update_typed(u, <double*>u.p, <double*>u.g, <double*>u.s0, <double*>u.s1,
                      <double*>u.s2)
    else:
        _update_typed(u, <float*>u.p, <float*>u.g, <float*>u.s0, <float*>u.s1,
                      <float*>u.s2)
    return True
