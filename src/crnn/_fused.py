"""The whole training step in one compiled call: ``model.train_step`` and fit's steps.

The engine computes the loss and the gradients into a flat vector laid out
like the parameters, then clips them and applies the optimizer's update to
the flat parameter vector in the same call (``Engine.train``), with the
optimizer's state in flat vectors of the same layout. The optimizer keeps
seeing per-parameter buffers: they become views into those vectors, so
``state_dict``, ``load_state_dict`` and ``step`` work as before.

crnn's four optimizers are fused; a subclass of one (which may change its
update) and any other Optimizer take the step in Python: the same loss and
gradients, ``clip_grad_value``/``clip_grad_norm`` and ``optimizer.step``.
"""

import weakref

import numpy as np

from crnn import _signals, optim
from crnn.clip import clip_grad_norm, clip_grad_value

# Kind (as Engine.train numbers them) and state buffers, in the engine's order.
_FUSED: dict[type, tuple[int, tuple[str, ...]]] = {
    optim.SGD: (0, ("momentum_buffer",)),
    optim.Adagrad: (1, ("sum",)),
    optim.RMSprop: (2, ("square_avg", "grad_avg", "momentum_buffer")),
    optim.Adam: (3, ("exp_avg", "exp_avg_sq")),
}


class _FlatState:
    """An optimizer's buffers as flat vectors laid out like one model's parameters."""

    def __init__(self, model, opt):
        size, layout = model._engine.size, model._engine.layout
        self.state = opt.state
        self.buffers = tuple(opt._buffers)
        # The momentum buffer starts as the first gradient: only if nothing is stored.
        self.first = not opt.state
        self.vectors = {}
        stored = set(opt.state)
        for key, _, _ in layout:
            opt.state.setdefault(key, {})      # as step() makes it, even with no buffers
        for name in self.buffers:
            flat = np.zeros(size, dtype=model.dtype)
            for key, offset, shape in layout:
                n = int(np.prod(shape))
                view = flat[offset:offset + n]
                if key in stored:
                    view[...] = opt.state[key][name]
                opt.state[key][name] = view
            self.vectors[name] = flat

    def current(self, opt):
        """Still the optimizer's state (load_state_dict replaces the dict)?"""
        return opt.state is self.state and tuple(opt._buffers) == self.buffers


def _hyper(opt, kind):
    """The hyperparameters Engine.train takes, for the step count just reached."""
    t = opt.step_count
    if kind == 0:
        return (opt.lr, opt.momentum, opt.dampening, opt.weight_decay, float(opt.nesterov))
    if kind == 1:
        return (opt.lr / (1 + (t - 1) * opt.lr_decay), opt.eps, opt.weight_decay)
    if kind == 2:
        return (opt.lr, opt.alpha, opt.eps, opt.weight_decay, opt.momentum,
                float(opt.centered))
    b1, b2 = opt.betas
    return (opt.lr, b1, b2, opt.eps, opt.weight_decay, 1 - b1 ** t, 1 - b2 ** t)


def check_optimizer(model, opt):
    if not isinstance(opt, optim.Optimizer):
        raise TypeError(f"optimizer: expected a crnn optimizer built on this model's params "
                        f"(e.g. crnn.Adam(model.params)), got {type(opt).__name__}")
    if opt.params is not model.params:
        raise ValueError("optimizer: must be built on this model's params "
                         "(e.g. crnn.Adam(model.params))")


def _flat_state(model, opt):
    """The optimizer's flat state for ``model``, and what to put back in
    ``opt.state`` if this call's step fails (None when it was adopted before)."""
    # Every call: the engine would run an update whose buffer is missing (e.g. momentum
    # set after construction) on a NULL pointer.
    opt._check_buffers()
    flat = opt.__dict__.get("_crnn_flat")
    if flat is not None and flat[0]() is model and flat[1].current(opt):
        return flat[1], None
    before = {key: dict(bufs) for key, bufs in opt.state.items()}     # adoption edits both levels
    # A weak reference: the optimizer must not keep the model alive (nor pickle it).
    opt._crnn_flat = (weakref.ref(model), _FlatState(model, opt))
    return opt._crnn_flat[1], before


def _undo_adoption(opt, before):
    """A failed first fused step leaves opt.state as it found it."""
    opt.state.clear()
    opt.state.update(before)
    opt.__dict__.pop("_crnn_flat", None)


def step(model, W, w, masks, mean, opt, clip_norm, clip_value, dW, guard=None):
    """One training step on window ``w``: the loss, gradients into ``dW``, clipping and
    the update. Returns ``(loss, h, c, updated)``: not updated (parameters and the
    optimizer untouched) when the loss or a gradient is not finite. ``guard``: the
    caller's _signals.Guard, which holds signals during an update taken in Python
    (the engine's own cannot be split)."""
    h, c = model._new_states(w.B)
    scale = 1.0 / w.count if mean and w.count else 1.0
    fused = _FUSED.get(type(opt))
    if fused is None:
        loss = model._engine.loss(
            W, dW, w.X, w.tokens, w.B, w.bs, w.rev, w.h0, w.c0, masks, model._out,
            w.per_step, w.classes, w.values, scale, w.lo, w.hi, h, c, None)
        if not np.isfinite(loss) or not np.all(np.isfinite(dW)):
            return loss, h, c, False
        grads = model._unflatten(dW)
        if clip_value is not None:
            clip_grad_value(grads, clip_value)
        if clip_norm is not None:
            clip_grad_norm(grads, clip_norm)
        if guard is None:
            with _signals.Guard() as own, own.hold():
                opt.step(grads)
        else:
            with guard.hold():
                opt.step(grads)
        return loss, h, c, True
    kind, names = fused
    flat, before = _flat_state(model, opt)
    s = [flat.vectors.get(name) for name in names]
    # Counted first, so that the update and the count go together whatever stops the
    # call: a signal inside it stops it before the update, and this is undone.
    opt.step_count += 1
    try:
        loss, _, updated = model._engine.train(
            W, dW, w.X, w.tokens, w.B, w.bs, w.rev, w.h0, w.c0, masks, model._out,
            w.per_step, w.classes, w.values, scale, w.lo, w.hi, h, c, kind, s[0],
            s[1] if len(s) > 1 else None, s[2] if len(s) > 2 else None, _hyper(opt, kind),
            flat.first, 0.0 if clip_value is None else clip_value,
            -1.0 if clip_norm is None else clip_norm)
    except BaseException:
        opt.step_count -= 1
        if before is not None:
            _undo_adoption(opt, before)
        raise
    if updated:
        flat.first = False
    else:
        opt.step_count -= 1
        if before is not None:
            _undo_adoption(opt, before)
    return loss, h, c, updated


def fused(opt):
    """Whether ``opt``'s updates run inside the engine's call."""
    return type(opt) in _FUSED
