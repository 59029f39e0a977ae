"""The benchmarked problems and one runner per library, plus the self-check.

A runner owns its own copy of the weights and of the inputs, built from the
same arrays for every library, and exposes ``train_step()`` — forward, softmax
cross-entropy summed over all T·B steps, BPTT, ``clip_grad_norm(5.0)``, SGD —
and ``infer()`` (forward only, softmax probabilities). ``self_check`` runs the
runners against each other in float64 before anything is timed.
"""

import importlib
import math

import numpy as np

import _numpy_rnn

# (B, T, D, H, O), from the performance issue.
SIZES = {
    "char": (1, 25, 65, 100, 65),
    "small": (32, 64, 32, 64, 32),
    "medium": (64, 100, 128, 256, 128),
    "large": (64, 50, 512, 1024, 512),
    "deepbench": (32, 50, 1760, 1760, 1760),
}
LIBRARIES = ("crnn", "numpy", "torch")
MAX_NORM = 5.0
LR = 1e-3


def dims(size):
    """(B, T, D, H, O) of ``size``: a name from ``SIZES`` or five positive integers."""
    if isinstance(size, str):
        return SIZES[size]
    size = tuple(int(n) for n in size)
    if len(size) != 5 or min(size) < 1:
        raise ValueError(f"a size is a name from {list(SIZES)} or (B, T, D, H, O), not {size}")
    return size


def step_flops(size, forward_only=False):
    """FLOPs of one step: 6·T·B·(D·H + H·H + H·O) to train, a third of that forward only."""
    B, T, D, H, O = dims(size)
    return (2 if forward_only else 6) * T * B * (D * H + H * H + H * O)


def make_problem(size, dtype, seed=0):
    """Weights (PyTorch's default init, uniform ±1/√H), inputs x (T, B, D) and targets (T, B)."""
    B, T, D, H, O = dims(size)
    rng = np.random.default_rng(seed)
    k = 1.0 / math.sqrt(H)
    shapes = {"W_x": (H, D), "W_h": (H, H), "b_h": (H,), "W_y": (O, H), "b_y": (O,)}
    params = {name: rng.uniform(-k, k, shape).astype(dtype) for name, shape in shapes.items()}
    x = rng.standard_normal((T, B, D)).astype(dtype)
    target = rng.integers(0, O, (T, B))
    return params, x, target


def available(name):
    """The imported library for runner ``name``, or the error message if it cannot be imported."""
    try:
        return importlib.import_module(name)
    except Exception as exc:  # an ImportError, or a half-built package failing at import
        return f"{type(exc).__name__}: {exc}"


class CrnnRunner:
    """crnn: ``loss_and_grad(reduction="sum")`` + ``crnn.clip_grad_norm`` + ``crnn.SGD``."""

    def __init__(self, params, x, target, lr=LR):
        import crnn

        self._crnn = crnn
        H, D = params["W_x"].shape
        O = params["W_y"].shape[0]
        self.model = crnn.RNN(D, H, O, nonlinearity="tanh", output="softmax",
                              dtype=params["W_x"].dtype, seed=0)
        for key, value in params.items():
            self.model.params[key][...] = value
        self.optimizer = crnn.SGD(self.model.params, lr)
        self.x = x.copy()
        self.target = target.copy()

    def train_step(self):
        """One training step; returns the loss."""
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


class NumpyRunner:
    """The plain-numpy step of ``_numpy_rnn``."""

    def __init__(self, params, x, target, lr=LR):
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
    """PyTorch CPU: ``nn.RNN`` + ``nn.Linear`` + ``cross_entropy(sum)`` + ``clip_grad_norm_`` + SGD.

    ``nn.RNN`` has two biases: b_ih carries b_h, and b_hh is held at zero
    (no gradient), so that the network, the clipped norm and the update are
    exactly those of crnn and numpy.
    """

    def __init__(self, params, x, target, lr=LR):
        import torch

        self._torch = torch
        H, D = params["W_x"].shape
        O = params["W_y"].shape[0]
        dtype = torch.float64 if params["W_x"].dtype == np.float64 else torch.float32
        self.rnn = torch.nn.RNN(D, H, nonlinearity="tanh").to(dtype)
        self.linear = torch.nn.Linear(H, O).to(dtype)
        with torch.no_grad():
            self.rnn.weight_ih_l0.copy_(torch.from_numpy(params["W_x"]))
            self.rnn.weight_hh_l0.copy_(torch.from_numpy(params["W_h"]))
            self.rnn.bias_ih_l0.copy_(torch.from_numpy(params["b_h"]))
            self.rnn.bias_hh_l0.zero_()
            self.linear.weight.copy_(torch.from_numpy(params["W_y"]))
            self.linear.bias.copy_(torch.from_numpy(params["b_y"]))
        self.rnn.bias_hh_l0.requires_grad_(False)
        self.parameters = list(self._named().values())
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
        grads = {k: v.grad.numpy().copy() for k, v in self._named().items()}
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach()), grads

    def _named(self):
        return {"W_x": self.rnn.weight_ih_l0, "W_h": self.rnn.weight_hh_l0,
                "b_h": self.rnn.bias_ih_l0, "W_y": self.linear.weight, "b_y": self.linear.bias}

    def weights(self):
        """The current weights as numpy arrays keyed like ``params``."""
        return {k: v.detach().numpy().copy() for k, v in self._named().items()}


RUNNERS = {"crnn": CrnnRunner, "numpy": NumpyRunner, "torch": TorchRunner}


def _rel_err(a, b):
    """max |a − b| / max(max |b|, tiny)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def self_check(libraries, tol=1e-9):
    """Check every runner against the numpy one in float64 before timing.

    On a small problem (T=7, B=3, D=5, H=6, O=4, with gradients large enough
    that clipping at 5.0 is active): the summed loss and every gradient, then
    the weights after one full training step (clip + SGD included). Returns a
    list of ``(what, relative error)``; raises AssertionError past ``tol``.
    """
    size = (3, 7, 5, 6, 4)
    params, x, target = make_problem(size, np.float64, seed=1)
    params = {k: 3 * v for k, v in params.items()}  # larger weights: a gradient norm > 5
    ref = NumpyRunner(params, x, target, lr=0.1)
    ref_loss, ref_grads = ref.loss_and_grad()
    norm = math.sqrt(sum(float(np.sum(g * g)) for g in ref_grads.values()))
    assert norm > MAX_NORM, f"self-check problem does not exercise clipping (norm {norm})"
    ref.train_step()
    ref_weights = ref.weights()
    report = []
    for name in libraries:
        if name == "numpy":
            continue
        runner = RUNNERS[name](params, x, target, lr=0.1)
        loss, grads = runner.loss_and_grad()
        report.append((f"{name} loss", abs(loss - ref_loss) / abs(ref_loss)))
        report.extend((f"{name} d{k}", _rel_err(grads[k], ref_grads[k])) for k in ref_grads)
        runner.train_step()
        weights = runner.weights()
        report.append((f"{name} weights after a step",
                       max(_rel_err(weights[k], ref_weights[k]) for k in ref_weights)))
    bad = [(what, err) for what, err in report if not err <= tol]
    assert not bad, f"self-check failed (tolerance {tol}): {bad}"
    return report
