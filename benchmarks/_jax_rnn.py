"""JAX (XLA CPU) as a baseline: the whole training step in one ``jax.jit`` function.

This is what a user who wants to escape Python overhead writes in JAX: one
jitted function ``(params, x, target) -> (new params, loss)`` containing

- the forward pass: per layer and direction, the input projection for all
  T steps as one matmul (``x·W_xᵀ + b``, outside the recurrence), then
  ``jax.lax.scan`` over time (``reverse=True`` for the reverse direction:
  the benchmark has no ragged lengths, so reversing time is exact), the
  layer's output the directions' concatenation (forward first); then the
  head ``W_y``, ``b_y`` at every step;
- softmax cross-entropy summed over all T·B steps;
- ``jax.value_and_grad`` (BPTT through the scan);
- global-norm clipping to ``max_norm`` with PyTorch's formula,
  coef = min(1, max_norm / (norm + 1e-6)), and the SGD update p − lr·coef·g.

The cells are PyTorch's, with crnn's parameter names (``_steps.shapes``):
Elman ``h = tanh(W_x x + b_h + W_h h)``; LSTM gates (i, f, g, o) with one
bias ``b_h``; GRU gates (r, z, n) with ``b_x`` (input) and ``b_h`` (hidden)
biases, ``n = tanh(W_xn x + b_xn + r ⊙ (W_hn h + b_hn))``,
``h = (1 − z) ⊙ n + z ⊙ h``.

The parameter buffers are donated to the step (updated in place by XLA) and
every call blocks until its results are ready, so that asynchronous dispatch
does not hide the work from a timer. float64 needs ``jax_enable_x64``, which
``_jax`` turns on when it is asked for float64, before it makes any array.

jax is imported lazily: ``limit_threads`` must run before it is, since XLA
sizes its CPU thread pool once, when jax creates its CPU client.
"""

import os
import sys

import numpy as np

# What a user finds for "one thread" in JAX (Eigen's matmuls single-threaded).
# In jax 0.10 it is not enough (XNNPACK's matmuls run on XLA's intra-op pool,
# sized from the CPU affinity mask), hence the affinity in limit_threads.
SINGLE_THREAD_FLAGS = ("--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1")


def limit_threads(threads):
    """Limit this process's XLA CPU threads to ``threads``; before jax is imported.

    ``None`` leaves JAX's defaults. 1 adds ``SINGLE_THREAD_FLAGS`` to
    XLA_FLAGS; any N below the usable CPUs also restricts this process's CPU
    affinity to N of them (XLA sizes its thread pool from that mask). Does
    nothing in a process that already imported jax: too late there, and
    bench_train's parent (which imports jax for the self-check and times
    nothing) must not pin itself, as its workers would inherit the mask.
    Returns True if it limited anything.
    """
    if threads is None or "jax" in sys.modules:
        return False
    if threads == 1:
        flags = os.environ.get("XLA_FLAGS", "").split()
        os.environ["XLA_FLAGS"] = " ".join(flags + [f for f in SINGLE_THREAD_FLAGS
                                                    if f not in flags])
    cpus = sorted(os.sched_getaffinity(0))
    if threads < len(cpus):
        os.sched_setaffinity(0, cpus[:threads])
    return True


def _jax(dtype):
    """jax and jax.numpy, with float64 enabled when ``dtype`` is float64."""
    import jax

    if np.dtype(dtype) == np.float64 and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    return jax, jax.numpy


def _suffix(layer, direction):
    """crnn's parameter suffix: ``""``, ``"_reverse"``, ``"_l1"``, ``"_l1_reverse"``, ..."""
    return ("" if layer == 0 else f"_l{layer}") + ("_reverse" if direction else "")


def build(cell, layers, dirs, lr, max_norm):
    """The jitted functions of one network: ``train``, ``infer`` and ``loss_and_grad``.

    ``train(params, x, target) -> (new params, loss)`` donates ``params``;
    ``infer(params, x) -> softmax probabilities (T, B, O)``;
    ``loss_and_grad(params, x, target) -> (loss, grads)``. ``x`` is (T, B, D),
    ``target`` (T·B,) integers.
    """
    import jax
    import jax.numpy as jnp

    sigmoid = jax.nn.sigmoid

    def recurrence(A, W_h, b_h, reverse):
        """Hidden states (T, B, H) of one layer and direction, from A = x·W_xᵀ + bias."""
        H = W_h.shape[1]
        W_hT = W_h.T
        h0 = jnp.zeros((A.shape[1], H), A.dtype)
        if cell == "rnn":
            def step(h, a):
                h = jnp.tanh(a + h @ W_hT)
                return h, h
            carry = h0
        elif cell == "lstm":
            def step(hc, a):
                h, c = hc
                z = a + h @ W_hT
                i, f, g, o = (z[:, k * H:(k + 1) * H] for k in range(4))
                c = sigmoid(f) * c + sigmoid(i) * jnp.tanh(g)
                h = sigmoid(o) * jnp.tanh(c)
                return (h, c), h
            carry = (h0, h0)
        else:  # gru
            def step(h, a):
                hh = h @ W_hT + b_h
                r = sigmoid(a[:, :H] + hh[:, :H])
                z = sigmoid(a[:, H:2 * H] + hh[:, H:2 * H])
                n = jnp.tanh(a[:, 2 * H:] + r * hh[:, 2 * H:])
                h = (1 - z) * n + z * h
                return h, h
            carry = h0
        _, hs = jax.lax.scan(step, carry, A, reverse=reverse)
        return hs

    def logits(params, x):
        """Z (T·B, O) of the top layer's outputs at every step."""
        T, B, _ = x.shape
        inp = x
        for layer in range(layers):
            outs = []
            for d in range(dirs):
                s = _suffix(layer, d)
                bias = params["b_x" + s] if cell == "gru" else params["b_h" + s]
                A = (inp.reshape(T * B, -1) @ params["W_x" + s].T + bias).reshape(T, B, -1)
                outs.append(recurrence(A, params["W_h" + s], params["b_h" + s], bool(d)))
            inp = outs[0] if dirs == 1 else jnp.concatenate(outs, axis=-1)
        return inp.reshape(T * B, -1) @ params["W_y"].T + params["b_y"]

    def loss(params, x, target):
        """Softmax cross-entropy summed over all T·B steps."""
        logp = jax.nn.log_softmax(logits(params, x), axis=-1)
        return -jnp.sum(jnp.take_along_axis(logp, target[:, None], axis=1))

    value_and_grad = jax.value_and_grad(loss)

    def train(params, x, target):
        value, grads = value_and_grad(params, x, target)
        norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree_util.tree_leaves(grads)))
        coef = jnp.minimum(1.0, max_norm / (norm + 1e-6))
        new = jax.tree_util.tree_map(lambda p, g: p - lr * (coef * g), params, grads)
        return new, value

    def infer(params, x):
        T, B, _ = x.shape
        return jax.nn.softmax(logits(params, x), axis=-1).reshape(T, B, -1)

    return (jax.jit(train, donate_argnums=(0,)), jax.jit(infer), jax.jit(value_and_grad))


class JaxRunner:
    """JAX on the CPU: the whole step in one ``jax.jit`` function (see the module's doc)."""

    def __init__(self, params, x, target, lr=None, net=None):
        import _steps  # here, not at the top: _steps imports this module

        net = net or _steps.Net()
        dtype = params["W_x"].dtype
        jax, jnp = _jax(dtype)
        self._jax = jax
        self._train, self._infer, self._loss_and_grad = build(
            net.cell, net.layers, net.dirs, _steps.LR if lr is None else lr, _steps.MAX_NORM)
        # jnp.array copies: the donated buffers are JAX's own, not views of numpy's.
        self.params = {k: jnp.array(v, dtype=dtype) for k, v in params.items()}
        self.x = jnp.array(x, dtype=dtype)
        self.target = jnp.array(target.reshape(-1), dtype=jnp.int32)
        bad = [k for k, v in self.params.items() if v.dtype != dtype]
        if bad or self.x.dtype != dtype:
            raise RuntimeError(f"jax made {self.x.dtype} arrays of {dtype} data "
                               f"(jax_enable_x64 off?)")

    def train_step(self):
        """One training step; returns the loss (after the new weights are ready)."""
        self.params, loss = self._train(self.params, self.x, self.target)
        self._jax.block_until_ready(self.params)
        return float(loss)

    def infer(self):
        """Forward only: softmax probabilities (T, B, O), computed before returning."""
        return self._infer(self.params, self.x).block_until_ready()

    def loss_and_grad(self):
        """Summed loss and gradients (numpy), without updating anything."""
        loss, grads = self._loss_and_grad(self.params, self.x, self.target)
        return float(loss), {k: np.array(v) for k, v in grads.items()}

    def weights(self):
        """The current weights as numpy arrays keyed like ``params``."""
        return {k: np.array(v) for k, v in self.params.items()}


def gemm(a, b):
    """A callable running one a·b product through XLA (jitted, compiled here) to completion."""
    jax, jnp = _jax(a.dtype)
    ja, jb = jnp.array(a), jnp.array(b)
    mm = jax.jit(jnp.matmul).lower(ja, jb).compile()
    return lambda: mm(ja, jb).block_until_ready()
