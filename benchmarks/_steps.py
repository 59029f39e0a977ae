"""The benchmarked problems and one runner per library, plus the self-check.

A problem is a size (B, T, D, H, O) and a network (``Net``: the cell, the
layers, the directions). A runner owns its own copy of the weights and of
the inputs, built from the same arrays for every library, and exposes
``train_step()`` — forward, softmax cross-entropy summed over all T·B steps,
BPTT, ``clip_grad_norm(5.0)``, SGD — and ``infer()`` (forward only, softmax
probabilities). ``self_check`` runs the runners against a reference in
float64 before anything is timed.
"""

import importlib
import math
import os
import sys

import numpy as np

import _jax_rnn
import _numpy_rnn

# (B, T, D, H, O), from the performance issue.
SIZES = {
    "char": (1, 25, 65, 100, 65),
    "small": (32, 64, 32, 64, 32),
    "medium": (64, 100, 128, 256, 128),
    "large": (64, 50, 512, 1024, 512),
    "deepbench": (32, 50, 1760, 1760, 1760),
}
# crnn_base: another build of crnn (e.g. the previous main) for A/B runs, imported
# from the folder in CRNN_BASE (a base without LSTM/GRU: run it with --cell rnn).
LIBRARIES = ("crnn", "crnn_base", "numpy", "torch", "jax")
CELLS = {"rnn": 1, "lstm": 4, "gru": 3}      # gates per cell
MAX_NORM = 5.0
LR = 1e-3


class Net:
    """What is benchmarked besides the size: the cell, the layers and the directions."""

    def __init__(self, cell="rnn", layers=1, bidirectional=False):
        if cell not in CELLS:
            raise ValueError(f"cell: expected one of {list(CELLS)}, got {cell!r}")
        self.cell, self.layers, self.bidirectional = cell, int(layers), bool(bidirectional)
        self.dirs = 2 if bidirectional else 1

    def as_dict(self):
        return {"cell": self.cell, "layers": self.layers, "bidirectional": self.bidirectional}

    @property
    def plain(self):
        """The one-layer, one-direction Elman RNN every library has."""
        return (self.cell, self.layers, self.bidirectional) == ("rnn", 1, False)

    def __str__(self):
        return (f"{self.cell.upper() if self.cell != 'rnn' else 'RNN'}"
                f"{f' x{self.layers} layers' if self.layers > 1 else ''}"
                f"{' bidirectional' if self.bidirectional else ''}")


def dims(size):
    """(B, T, D, H, O) of ``size``: a name from ``SIZES`` or five positive integers."""
    if isinstance(size, str):
        return SIZES[size]
    size = tuple(int(n) for n in size)
    if len(size) != 5 or min(size) < 1:
        raise ValueError(f"a size is a name from {list(SIZES)} or (B, T, D, H, O), not {size}")
    return size


def step_flops(size, forward_only=False, net=None):
    """FLOPs of one step: 6·T·B·(Σ_layers,dirs G·(D_in·H + H·H) + H·dirs·O) to train
    (6·T·B·(G·(D·H + H·H) + H·O) for one layer), a third of that forward only."""
    net = net or Net()
    B, T, D, H, O = dims(size)
    G = CELLS[net.cell]
    per_row = sum(net.dirs * G * ((D if l == 0 else net.dirs * H) * H + H * H)
                  for l in range(net.layers)) + net.dirs * H * O
    return (2 if forward_only else 6) * T * B * per_row


def shapes(size, net):
    """crnn's parameter names and PyTorch's shapes, in crnn's order."""
    B, T, D, H, O = dims(size)
    G = CELLS[net.cell]
    out = {}
    for l in range(net.layers):
        for d in range(net.dirs):
            s = ("" if l == 0 else f"_l{l}") + ("_reverse" if d else "")
            out["W_x" + s] = (G * H, D if l == 0 else net.dirs * H)
            out["W_h" + s] = (G * H, H)
            out["b_h" + s] = (G * H,)
            if net.cell == "gru":
                out["b_x" + s] = (G * H,)
    out["W_y"], out["b_y"] = (O, net.dirs * H), (O,)
    return out


def make_problem(size, dtype, seed=0, net=None):
    """Weights (PyTorch's default init, uniform ±1/√H), inputs x (T, B, D) and targets (T, B)."""
    net = net or Net()
    B, T, D, H, O = dims(size)
    rng = np.random.default_rng(seed)
    k = 1.0 / math.sqrt(H)
    params = {name: rng.uniform(-k, k, shape).astype(dtype)
              for name, shape in shapes(size, net).items()}
    x = rng.standard_normal((T, B, D)).astype(dtype)
    target = rng.integers(0, O, (T, B))
    return params, x, target


def available(name):
    """The imported library for runner ``name``, or the error message if it cannot be imported."""
    if name == "crnn_base":
        base = os.environ.get("CRNN_BASE")
        if not base:
            return "set CRNN_BASE to the folder (e.g. a checkout's src/) of the crnn to compare"
        if "crnn" in sys.modules and not sys.modules["crnn"].__file__.startswith(base):
            return "crnn_base must be imported in a process of its own"
        sys.path.insert(0, base)
        name = "crnn"
    try:
        return importlib.import_module(name)
    except Exception as exc:  # an ImportError, or a half-built package failing at import
        return f"{type(exc).__name__}: {exc}"


def supports(lib, net):
    """Whether library ``lib`` has a runner for ``net``."""
    return net.plain or lib in ("crnn", "crnn_base", "torch", "jax")


class CrnnRunner:
    """crnn: ``train_step(..., clip_norm=5, reduction="sum")`` with ``crnn.SGD`` — one
    compiled call; a crnn without it (an older base) takes ``loss_and_grad`` +
    ``crnn.clip_grad_norm`` + ``SGD.step``, the same step in three calls."""

    def __init__(self, params, x, target, lr=LR, net=None, module="crnn"):
        crnn = available(module)
        net = net or Net()
        self._crnn = crnn
        H, D = params["W_h"].shape[1], params["W_x"].shape[1]
        O = params["W_y"].shape[0]
        cls = {"rnn": crnn.RNN, "lstm": getattr(crnn, "LSTM", None),
               "gru": getattr(crnn, "GRU", None)}[net.cell]
        kw = {} if net.plain else {"num_layers": net.layers, "bidirectional": net.bidirectional}
        self.model = cls(D, H, O, output="softmax", dtype=params["W_x"].dtype, seed=0, **kw)
        for key, value in params.items():
            self.model.params[key][...] = value
        self.optimizer = crnn.SGD(self.model.params, lr)
        self.x = x.copy()
        self.target = target.copy()

    def train_step(self):
        """One training step; returns the loss."""
        if hasattr(self.model, "train_step"):
            return self.model.train_step(self.x, self.target, self.optimizer,
                                         clip_norm=MAX_NORM, reduction="sum")
        loss, grads, _ = self.model.loss_and_grad(self.x, self.target, reduction="sum")
        self._crnn.clip_grad_norm(grads, MAX_NORM)
        self.optimizer.step(grads)
        return loss

    def infer(self):
        """Forward only: softmax probabilities (T, B, O)."""
        return self.model.forward(self.x)[0]

    def loss_and_grad(self):
        """Summed loss and gradients, without updating anything."""
        loss, grads, _ = self.model.loss_and_grad(self.x, self.target, reduction="sum")
        return loss, grads

    def weights(self):
        """The current weights as numpy arrays keyed like ``params``."""
        return {k: np.array(v) for k, v in self.model.params.items()}


class CrnnBaseRunner(CrnnRunner):
    """The crnn in CRNN_BASE (e.g. the previous main), for A/B runs: same step."""

    def __init__(self, params, x, target, lr=LR, net=None):
        super().__init__(params, x, target, lr, net, module="crnn_base")


class NumpyRunner:
    """The plain-numpy step of ``_numpy_rnn`` (the one-layer Elman RNN)."""

    def __init__(self, params, x, target, lr=LR, net=None):
        if net is not None and not net.plain:
            raise ValueError(f"the numpy step is a one-layer Elman RNN, not {net}")
        self.params = {k: v.copy() for k, v in params.items()}
        self.x = x.copy()
        self.target = target.copy()
        self.lr = lr

    def train_step(self):
        """One training step; returns the loss."""
        return _numpy_rnn.train_step(self.params, self.x, self.target, self.lr, MAX_NORM)

    def infer(self):
        """Forward only: softmax probabilities (T, B, O)."""
        return _numpy_rnn.forward(self.params, self.x)[0]

    def loss_and_grad(self):
        """Summed loss and gradients, without updating anything."""
        loss, grads, _ = _numpy_rnn.loss_and_grad(self.params, self.x, self.target)
        return loss, grads

    def weights(self):
        """The current weights as numpy arrays keyed like ``params``."""
        return {k: v.copy() for k, v in self.params.items()}


class TorchRunner:
    """PyTorch CPU: ``nn.RNN``/``nn.LSTM``/``nn.GRU`` + ``nn.Linear`` + ``cross_entropy(sum)``
    + ``clip_grad_norm_`` + SGD.

    PyTorch's RNN and LSTM have two biases where crnn has one: b_ih carries b_h
    and b_hh is held at zero (no gradient), so that the network, the clipped
    norm and the update are exactly crnn's. The GRU keeps both, as crnn does.
    PyTorch runs its CPU LSTM and GRU through oneDNN where it can.
    """

    def __init__(self, params, x, target, lr=LR, net=None):
        import torch

        net = net or Net()
        self._torch = torch
        H, D = params["W_h"].shape[1], params["W_x"].shape[1]
        O = params["W_y"].shape[0]
        dtype = torch.float64 if params["W_x"].dtype == np.float64 else torch.float32
        cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[net.cell]
        kw = {"nonlinearity": "tanh"} if net.cell == "rnn" else {}
        self.rnn = cls(D, H, num_layers=net.layers, bidirectional=net.bidirectional,
                       **kw).to(dtype)
        self.linear = torch.nn.Linear(net.dirs * H, O).to(dtype)
        self._names = {}
        for l in range(net.layers):
            for d in range(net.dirs):
                s = ("" if l == 0 else f"_l{l}") + ("_reverse" if d else "")
                ts = f"_l{l}" + ("_reverse" if d else "")
                self._names["W_x" + s] = getattr(self.rnn, "weight_ih" + ts)
                self._names["W_h" + s] = getattr(self.rnn, "weight_hh" + ts)
                if net.cell == "gru":
                    self._names["b_x" + s] = getattr(self.rnn, "bias_ih" + ts)
                    self._names["b_h" + s] = getattr(self.rnn, "bias_hh" + ts)
                else:
                    self._names["b_h" + s] = getattr(self.rnn, "bias_ih" + ts)
                    hh = getattr(self.rnn, "bias_hh" + ts)
                    with torch.no_grad():
                        hh.zero_()
                    hh.requires_grad_(False)
        self._names["W_y"], self._names["b_y"] = self.linear.weight, self.linear.bias
        with torch.no_grad():
            for k, p in self._names.items():
                p.copy_(torch.from_numpy(params[k]))
        self.parameters = list(self._names.values())
        self.optimizer = torch.optim.SGD(self.parameters, lr=lr)
        self.x = torch.from_numpy(x.copy())
        self.target = torch.from_numpy(target.reshape(-1).astype(np.int64))
        self.O = O

    def _loss(self):
        out, _ = self.rnn(self.x)
        z = self.linear(out)
        return self._torch.nn.functional.cross_entropy(z.reshape(-1, self.O), self.target,
                                                       reduction="sum")

    def train_step(self):
        """One training step; returns the loss.

        The gradients are released at the end of the step (``zero_grad(set_to_none=True)``
        after ``step()``), so that, as with crnn and numpy, nothing but the
        weights and inputs outlives a step and the memory probe sees it all.
        """
        loss = self._loss()
        loss.backward()
        self._torch.nn.utils.clip_grad_norm_(self.parameters, MAX_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    def infer(self):
        """Forward only: softmax probabilities (T, B, O)."""
        with self._torch.inference_mode():
            out, _ = self.rnn(self.x)
            return self._torch.softmax(self.linear(out), dim=-1)

    def loss_and_grad(self):
        """Summed loss and gradients, without updating anything."""
        loss = self._loss()
        loss.backward()
        grads = {k: v.grad.numpy().copy() for k, v in self._names.items()}
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach()), grads

    def weights(self):
        """The current weights as numpy arrays keyed like ``params``."""
        return {k: v.detach().numpy().copy() for k, v in self._names.items()}


RUNNERS = {"crnn": CrnnRunner, "crnn_base": CrnnBaseRunner, "numpy": NumpyRunner,
           "torch": TorchRunner, "jax": _jax_rnn.JaxRunner}  # JAX: one jax.jit step


def _rel_err(a, b):
    """max |a − b| / max(max |b|, tiny)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def self_check(libraries, tol=1e-9, net=None):
    """Check every runner against a reference in float64 before timing.

    The reference is the numpy step for the one-layer Elman RNN, else PyTorch
    (else nothing is compared). On a small problem (T=7, B=3, D=5, H=6, O=4,
    with gradients large enough that clipping at 5.0 is active): the summed
    loss and every gradient, then the weights after one full training step
    (clip + SGD included). Returns a list of ``(what, relative error)``;
    raises AssertionError past ``tol``.
    """
    net = net or Net()
    size = (3, 7, 5, 6, 4)
    params, x, target = make_problem(size, np.float64, seed=1, net=net)
    params = {k: 3 * v for k, v in params.items()}  # larger weights: a gradient norm > 5
    ref_name = "numpy" if net.plain else "torch"
    if ref_name == "torch" and isinstance(available("torch"), str):
        return []
    ref = RUNNERS[ref_name](params, x, target, lr=0.1, net=net)
    ref_loss, ref_grads = ref.loss_and_grad()
    norm = math.sqrt(sum(float(np.sum(g * g)) for g in ref_grads.values()))
    assert norm > MAX_NORM, f"self-check problem does not exercise clipping (norm {norm})"
    ref.train_step()
    ref_weights = ref.weights()
    report = []
    for name in libraries:
        if name == ref_name or not supports(name, net):
            continue
        runner = RUNNERS[name](params, x, target, lr=0.1, net=net)
        loss, grads = runner.loss_and_grad()
        report.append((f"{name} loss", abs(loss - ref_loss) / abs(ref_loss)))
        report.extend((f"{name} d{k}", _rel_err(grads[k], ref_grads[k])) for k in ref_grads)
        runner.train_step()
        weights = runner.weights()
        report.append((f"{name} weights after a step",
                       max(_rel_err(weights[k], ref_weights[k]) for k in ref_weights)))
    bad = [(what, err) for what, err in report if not err <= tol]
    assert not bad, f"self-check failed (tolerance {tol}, vs {ref_name}): {bad}"
    return [(f"{what} (vs {ref_name})", err) for what, err in report]
