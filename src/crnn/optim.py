"""Optimizers and learning-rate schedules.

Every optimizer updates the parameter arrays in place, one compiled pass per
array with no temporaries, following the update rules of ``torch.optim``
(the same defaults and the same formulas). They share one protocol::

    opt = crnn.Adam(model.params, lr=1e-3)
    loss, grads, _ = model.loss_and_grad(x, target)
    opt.step(grads)                       # grads: same keys (or order) and shapes as params
    saved = opt.state_dict()              # hyperparameters, step count, buffers (copies)
    opt.load_state_dict(saved)
"""

import abc
import math

import numpy as np

from crnn import _checks, _ops

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "StepLR", "CosineLR", "get"]


class Optimizer(abc.ABC):
    """Base class: holds the parameters, the per-parameter state and the step count.

    Parameters
    ----------
    params : dict of ndarray or list of ndarray
        The arrays to update in place (e.g. ``model.params``): writeable,
        C-contiguous float32 or float64.
    lr : float
        Learning rate, > 0.

    Subclasses name their per-parameter buffers in ``_buffers`` and apply
    one update in ``_update(p, g, state, first)``, with ``p``, ``g`` and the
    buffers flat views.
    """

    _buffers = ()

    def __init__(self, params, lr):
        if isinstance(params, dict):
            keys = list(params)
        elif isinstance(params, (list, tuple)):
            keys = list(range(len(params)))
        else:
            raise TypeError(f"params: expected a dict or list of arrays, "
                            f"got {type(params).__name__}")
        for k in keys:
            p = params[k]
            if not (isinstance(p, np.ndarray) and p.dtype in (np.float32, np.float64)
                    and p.flags.c_contiguous and p.flags.aligned and p.flags.writeable):
                raise TypeError(f"params[{k!r}]: expected a writeable, aligned, C-contiguous "
                                f"float32 or float64 array, got {_describe(p)}")
        self.params = params
        self.lr = _checks.positive_float(lr, "lr")
        self.step_count = 0
        self.state = {}

    def __getstate__(self):
        # The flat vectors a model's train_step keeps for this optimizer are a cache of
        # its state (made again on the next train_step): never pickled or copied.
        state = self.__dict__.copy()
        state.pop("_crnn_flat", None)
        return state

    def _keys(self):
        return list(self.params) if isinstance(self.params, dict) else \
            list(range(len(self.params)))

    def _pairs(self, grads):
        """(key, param, grad) for every parameter, every grad checked before any update."""
        keys = self._keys()
        if isinstance(self.params, dict):
            if not isinstance(grads, dict) or set(grads) != set(keys):
                got = sorted(grads) if isinstance(grads, dict) else type(grads).__name__
                raise ValueError(f"grads: expected a dict with keys {sorted(keys)}, got {got}")
        elif isinstance(grads, dict) or not hasattr(grads, "__len__") \
                or len(grads) != len(keys):
            raise ValueError(f"grads: expected a sequence of {len(keys)} arrays, one per "
                             f"parameter, got {_describe(grads)}")
        out = []
        for k in keys:
            p = self.params[k]
            try:
                g = np.asarray(grads[k])
            except (TypeError, ValueError) as exc:
                raise TypeError(f"grads[{k!r}]: expected an array of shape {p.shape}, "
                                f"could not convert it: {exc}") from None
            if g.shape != p.shape:
                raise ValueError(f"grads[{k!r}]: expected shape {p.shape}, got {g.shape}")
            if g.dtype.kind != "f":
                raise TypeError(f"grads[{k!r}]: expected floating-point values, "
                                f"got dtype {g.dtype}")
            out.append((k, p, _checks.contiguous(g, p.dtype)))
        return out

    def step(self, grads):
        """Apply one update, in place, from ``grads`` (same keys or order as ``params``)."""
        pairs = self._pairs(grads)
        self._check_buffers()
        self.step_count += 1
        for key, p, g in pairs:
            state = self.state.get(key)
            first = state is None
            if first:
                state = self.state[key] = {name: np.zeros(p.size, dtype=p.dtype)
                                           for name in self._buffers}
            if p.size:
                self._update(p.reshape(-1), g.reshape(-1), state, first)

    @abc.abstractmethod
    def _update(self, p, g, state, first):
        """One update of the flat parameter ``p``; ``first`` on its first step."""

    def _hyperparameters(self):
        return {"lr": self.lr}

    def state_dict(self):
        """A dict of the hyperparameters, the step count and copies of the buffers."""
        return {"optimizer": type(self).__name__,
                "hyperparameters": self._hyperparameters(),
                "step_count": self.step_count,
                "state": {k: {n: b.copy() for n, b in s.items()} for k, s in self.state.items()}}

    def load_state_dict(self, state_dict):
        """Restore what :meth:`state_dict` returned: all of it, or, when anything in it
        is wrong, nothing (ValueError or TypeError naming the field)."""
        name = type(self).__name__
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict: expected a dict (from {name}.state_dict()), "
                            f"got {type(state_dict).__name__}")
        missing = sorted({"optimizer", "hyperparameters", "step_count", "state"}
                         - set(state_dict))
        if missing:
            raise ValueError(f"state_dict: missing {', '.join(map(repr, missing))}")
        if state_dict["optimizer"] != name:
            raise ValueError(f"state_dict['optimizer']: expected the state of a {name}, "
                             f"got {state_dict['optimizer']!r}")
        hyper = state_dict["hyperparameters"]
        if not isinstance(hyper, dict):
            raise TypeError(f"state_dict['hyperparameters']: expected a dict, "
                            f"got {type(hyper).__name__}")
        if set(hyper) != set(self._hyperparameters()):
            raise ValueError(f"state_dict['hyperparameters']: expected the keys "
                             f"{sorted(self._hyperparameters())}, got {sorted(hyper)}")
        # The constructor checks every hyperparameter (and normalises it).
        try:
            probe = type(self)(self.params, **hyper)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"state_dict['hyperparameters']: {exc}") from None
        step_count = state_dict["step_count"]
        if isinstance(step_count, (bool, np.bool_)) or \
                not isinstance(step_count, (int, np.integer)) or step_count < 0:
            raise (ValueError if isinstance(step_count, (int, np.integer)) else TypeError)(
                f"state_dict['step_count']: expected an integer >= 0, got {step_count!r}")
        buffers = state_dict["state"]
        if not isinstance(buffers, dict):
            raise TypeError(f"state_dict['state']: expected a dict, got "
                            f"{type(buffers).__name__}")
        state = {}
        keys = set(self._keys())
        expected = set(probe._buffers)
        for k, bufs in buffers.items():
            field = f"state_dict['state'][{k!r}]"
            if k not in keys:
                raise ValueError(f"{field}: no such parameter")
            if not isinstance(bufs, dict) or set(bufs) != expected:
                got = sorted(bufs) if isinstance(bufs, dict) else type(bufs).__name__
                raise ValueError(f"{field}: expected the buffers {sorted(expected)}, got {got}")
            p = self.params[k]
            state[k] = {}
            for n, b in bufs.items():
                b = _checks._as_array(b, f"{field}[{n!r}]")
                if b.size != p.size:
                    raise ValueError(f"{field}[{n!r}]: expected {p.size} values, "
                                     f"got {b.size}")
                state[k][n] = np.array(b, dtype=p.dtype).reshape(-1)
        # Everything is checked: apply it in one step, which no signal can split.
        values = {key: getattr(probe, key) for key in hyper}
        values.update(_buffers=probe._buffers, step_count=int(step_count), state=state)
        self.__dict__.update(values)

    def _buffer_names(self, hyper):
        """The per-parameter buffers that the hyperparameters ``hyper`` call for."""
        return type(self)._buffers

    def _check_buffers(self):
        """ValueError when a hyperparameter set after construction (e.g. momentum) calls
        for buffers this optimizer does not have: the update would run without them."""
        needed = tuple(self._buffer_names(self._hyperparameters()))
        if needed != tuple(self._buffers):
            raise ValueError(f"{type(self).__name__}: its hyperparameters now call for the "
                             f"buffers {list(needed)}, not the {list(self._buffers)} it was "
                             f"built with; build a new optimizer with them")

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._hyperparameters().items())
        return f"{type(self).__name__}({args})"


def _describe(obj):
    if isinstance(obj, np.ndarray):
        flags = "".join(f", {what}" for what, bad in (
            ("not C-contiguous", not obj.flags.c_contiguous),
            ("not aligned", not obj.flags.aligned), ("read-only", not obj.flags.writeable))
            if bad)
        return f"{obj.dtype} array of shape {obj.shape}{flags}"
    return type(obj).__name__


def _rate(value, name, *, upper=None):
    value = _checks.positive_float(value, name, allow_zero=True)
    if upper is not None and value >= upper:
        raise ValueError(f"{name}: expected a number in [0, {upper}), got {value}")
    return value


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum and weight decay.

    ::

        d = grad + weight_decay·W
        b = d (first step), else momentum·b + (1 − dampening)·d
        d = d + momentum·b (nesterov) or b      (when momentum > 0)
        W ← W − lr·d

    Parameters
    ----------
    params : dict or list of ndarray
    lr : float
    momentum : float, default 0
    dampening : float, default 0
    weight_decay : float, default 0
    nesterov : bool, default False
        Requires momentum > 0 and dampening = 0.
    """

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        super().__init__(params, lr)
        self.momentum = _rate(momentum, "momentum")
        self.dampening = _rate(dampening, "dampening")
        self.weight_decay = _rate(weight_decay, "weight_decay")
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov: requires momentum > 0 and dampening = 0, "
                             f"got momentum={self.momentum}, dampening={self.dampening}")
        self._buffers = self._buffer_names(self._hyperparameters())

    def _buffer_names(self, hyper):
        return ("momentum_buffer",) if hyper["momentum"] else ()

    def _hyperparameters(self):
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "weight_decay": self.weight_decay, "nesterov": self.nesterov}

    def _update(self, p, g, state, first):
        if not self.momentum and not self.weight_decay:
            _ops.axpy(p, -self.lr, g)
            return
        _ops.sgd_update(p, g, state.get("momentum_buffer", p[:1]), self.lr, self.momentum,
                        self.dampening, self.weight_decay, self.nesterov, first)


class Adagrad(Optimizer):
    """Adagrad, as in the classic min-char-rnn: per-weight steps shrink with the
    sum of squared gradients.

    ::

        d = grad + weight_decay·W
        S ← S + d²
        W ← W − lr / (1 + (t − 1)·lr_decay) · d / (√S + eps)

    Parameters
    ----------
    params : dict or list of ndarray
    lr : float, default 0.01
    lr_decay : float, default 0
    weight_decay : float, default 0
    eps : float, default 1e-10
    """

    _buffers = ("sum",)

    def __init__(self, params, lr=0.01, lr_decay=0.0, weight_decay=0.0, eps=1e-10):
        super().__init__(params, lr)
        self.lr_decay = _rate(lr_decay, "lr_decay")
        self.weight_decay = _rate(weight_decay, "weight_decay")
        self.eps = _checks.positive_float(eps, "eps")

    def _hyperparameters(self):
        return {"lr": self.lr, "lr_decay": self.lr_decay, "weight_decay": self.weight_decay,
                "eps": self.eps}

    def _update(self, p, g, state, first):
        lr = self.lr / (1 + (self.step_count - 1) * self.lr_decay)
        _ops.adagrad_update(p, g, state["sum"], lr, self.eps, self.weight_decay)


class RMSprop(Optimizer):
    """RMSprop: steps scaled by a moving average of squared gradients.

    ::

        d = grad + weight_decay·W
        A ← α·A + (1 − α)·d²
        G ← α·G + (1 − α)·d                 (centered only)
        s = √(A − G²) + eps                 (√A + eps when not centered)
        b ← momentum·b + d/s;  W ← W − lr·b (momentum > 0), else W ← W − lr·d/s

    Parameters
    ----------
    params : dict or list of ndarray
    lr : float, default 0.01
    alpha : float, default 0.99
    eps : float, default 1e-8
    weight_decay : float, default 0
    momentum : float, default 0
    centered : bool, default False
    """

    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        super().__init__(params, lr)
        self.alpha = _rate(alpha, "alpha", upper=1.0)
        self.eps = _checks.positive_float(eps, "eps")
        self.weight_decay = _rate(weight_decay, "weight_decay")
        self.momentum = _rate(momentum, "momentum")
        self.centered = bool(centered)
        self._buffers = self._buffer_names(self._hyperparameters())

    def _buffer_names(self, hyper):
        return ("square_avg",) + (("grad_avg",) if hyper["centered"] else ()) + \
            (("momentum_buffer",) if hyper["momentum"] else ())

    def _hyperparameters(self):
        return {"lr": self.lr, "alpha": self.alpha, "eps": self.eps,
                "weight_decay": self.weight_decay, "momentum": self.momentum,
                "centered": self.centered}

    def _update(self, p, g, state, first):
        sq = state["square_avg"]
        _ops.rmsprop_update(p, g, sq, state.get("grad_avg", sq[:1]),
                            state.get("momentum_buffer", sq[:1]), self.lr, self.alpha,
                            self.eps, self.weight_decay, self.momentum, self.centered)


class Adam(Optimizer):
    """Adam: steps from bias-corrected moving averages of the gradient and its square.

    ::

        d = grad + weight_decay·W
        m ← β1·m + (1 − β1)·d;   v ← β2·v + (1 − β2)·d²
        W ← W − lr/(1 − β1^t) · m / (√v / √(1 − β2^t) + eps)

    Parameters
    ----------
    params : dict or list of ndarray
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    """

    _buffers = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise TypeError(f"betas: expected a pair of numbers, got {betas!r}") from None
        self.betas = (_rate(b1, "betas[0]", upper=1.0), _rate(b2, "betas[1]", upper=1.0))
        self.eps = _checks.positive_float(eps, "eps")
        self.weight_decay = _rate(weight_decay, "weight_decay")

    def _hyperparameters(self):
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps,
                "weight_decay": self.weight_decay}

    def _update(self, p, g, state, first):
        b1, b2 = self.betas
        t = self.step_count
        _ops.adam_update(p, g, state["exp_avg"], state["exp_avg_sq"], self.lr, b1, b2,
                         self.eps, self.weight_decay, 1 - b1 ** t, 1 - b2 ** t)


_NAMES = {
    "sgd": lambda params, lr: SGD(params, lr),
    "momentum": lambda params, lr: SGD(params, lr, momentum=0.9),
    "adagrad": lambda params, lr: Adagrad(params, lr),
    "rmsprop": lambda params, lr: RMSprop(params, lr),
    "adam": lambda params, lr: Adam(params, lr),
}


def get(optimizer, params, lr):
    """An optimizer from a name ("sgd", "momentum", "adagrad", "rmsprop", "adam") or instance."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in _NAMES:
        return _NAMES[optimizer.lower()](params, lr)
    raise ValueError(f"optimizer: expected one of {', '.join(map(repr, _NAMES))} or an "
                     f"Optimizer instance, got {optimizer!r}")


class _Schedule:
    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected a crnn optimizer, "
                            f"got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.epoch = 0

    def step(self):
        """Advance one epoch and set the optimizer's learning rate; return it."""
        self.epoch += 1
        self.optimizer.lr = self._lr(self.epoch)
        return self.optimizer.lr


class StepLR(_Schedule):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs.

    ``lr = base_lr · gamma ** (epoch // step_size)``, applied by :meth:`step`.
    """

    def __init__(self, optimizer, step_size, gamma=0.1):
        super().__init__(optimizer)
        self.step_size = _checks.positive_int(step_size, "step_size")
        self.gamma = _checks.positive_float(gamma, "gamma")

    def _lr(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineLR(_Schedule):
    """Cosine annealing from the base rate to ``eta_min`` over ``t_max`` epochs.

    ``lr = eta_min + (base_lr − eta_min)·(1 + cos(π·min(epoch, t_max)/t_max))/2``.
    """

    def __init__(self, optimizer, t_max, eta_min=0.0):
        super().__init__(optimizer)
        self.t_max = _checks.positive_int(t_max, "t_max")
        self.eta_min = _checks.positive_float(eta_min, "eta_min", allow_zero=True)

    def _lr(self, epoch):
        e = min(epoch, self.t_max)
        return self.eta_min + (self.base_lr - self.eta_min) * \
            (1 + math.cos(math.pi * e / self.t_max)) / 2
