"""A strong plain-numpy Elman RNN (tanh, softmax head): the benchmark baseline.

This is the training step a careful engineer writes with numpy alone, with
the same maths and data layout as crnn (row-major, time-major; weights in
PyTorch's shapes: W_x (H, D), W_h (H, H), b_h (H,), W_y (O, H), b_y (O,))::

    A   = X·W_xᵀ + b_h                 one matmul over all T·B rows
    for t: Hs[t+1] = tanh(A[t] + Hs[t]·W_hᵀ)
    Z   = Hs[1:]·W_yᵀ + b_y            one matmul
    L   = Σ logsumexp(z) − z[target]   fused, stable softmax cross-entropy
    dZ  = softmax(Z) − onehot(target)  computed in the same buffer as Z
    dW_y = dZᵀ·Hs[1:]   dHo = dZ·W_y   one matmul each
    for t from T−1 down: dA[t] = (dHo[t] + dA[t+1]·W_h) ⊙ (1 − Hs[t+1]²)
    dW_h = dAᵀ·Hs[:-1]   dW_x = dAᵀ·X  one matmul each, after the loop

Transposes are views (BLAS takes the transpose flag, nothing is copied),
every ufunc and matmul writes through ``out=`` into buffers allocated once per
call, and the per-step work is one matmul and two in-place ufuncs. Variable
lengths and other heads are out of scope: the benchmark does not need them.
"""

import math

import numpy as np

PARAM_NAMES = ("W_x", "W_h", "b_h", "W_y", "b_y")


def _hidden_states(params, x, h0):
    """Run the recurrence; return Hs (T+1, B, H) with Hs[0] = h0 (zeros when None)."""
    W_x, W_h, b_h = params["W_x"], params["W_h"], params["b_h"]
    T, B, D = x.shape
    H = W_h.shape[0]
    Hs = np.empty((T + 1, B, H), dtype=W_h.dtype)
    if h0 is None:
        Hs[0] = 0
    else:
        Hs[0] = h0
    A = Hs[1:]
    np.matmul(x.reshape(T * B, D), W_x.T, out=A.reshape(T * B, H))
    A += b_h
    W_hT = W_h.T
    tmp = np.empty((B, H), dtype=W_h.dtype)
    for t in range(T):
        np.matmul(Hs[t], W_hT, out=tmp)
        a = A[t]
        np.add(a, tmp, out=a)
        np.tanh(a, out=a)
    return Hs


def _logits(params, Hs):
    """Z = Hs[1:]·W_yᵀ + b_y as a (T·B, O) array."""
    W_y, b_y = params["W_y"], params["b_y"]
    T1, B, H = Hs.shape
    Z = np.matmul(Hs[1:].reshape((T1 - 1) * B, H), W_y.T)
    Z += b_y
    return Z


def forward(params, x, h0=None):
    """Inference: ``(y, h_last)`` with y = softmax(Z) of shape (T, B, O).

    ``x`` is float (T, B, D) of the weights' dtype, C-contiguous.
    """
    T, B, _ = x.shape
    Hs = _hidden_states(params, x, h0)
    Z = _logits(params, Hs)
    Z -= Z.max(axis=1, keepdims=True)
    np.exp(Z, out=Z)
    s = Z.sum(axis=1, keepdims=True)
    np.reciprocal(s, out=s)
    Z *= s
    return Z.reshape(T, B, -1), Hs[T].copy()


def loss_and_grad(params, x, target, h0=None):
    """Summed softmax cross-entropy over all T·B steps, its gradients, and h_last.

    ``x`` is float (T, B, D) of the weights' dtype, C-contiguous; ``target``
    ints (T, B). Returns ``(loss, grads, h_last)`` with ``grads`` keyed like
    ``params`` — the same contract as ``crnn.RNN.loss_and_grad(...,
    reduction="sum")`` without lengths.
    """
    W_h, W_y = params["W_h"], params["W_y"]
    T, B, D = x.shape
    H = W_h.shape[0]
    TB = T * B
    Hs = _hidden_states(params, x, h0)
    H1 = Hs[1:].reshape(TB, H)

    # Fused, stable softmax cross-entropy; Z becomes dZ in place.
    Z = _logits(params, Hs)
    rows = np.arange(TB)
    cls = target.reshape(TB)
    Z -= Z.max(axis=1, keepdims=True)
    loss = -float(Z[rows, cls].sum(dtype=np.float64))
    np.exp(Z, out=Z)
    s = Z.sum(axis=1, keepdims=True)
    loss += float(np.log(s).sum(dtype=np.float64))
    np.reciprocal(s, out=s)
    Z *= s
    Z[rows, cls] -= 1
    dZ = Z

    grads = {"W_y": np.matmul(dZ.T, H1), "b_y": dZ.sum(axis=0)}

    # BPTT. dA starts as dHo = dZ·W_y; the loop adds the recurrent term and
    # multiplies by tanh' = 1 − h², precomputed for all steps in one pass.
    dA = np.matmul(dZ, W_y).reshape(T, B, H)
    deriv = np.multiply(H1, H1).reshape(T, B, H)
    np.subtract(1, deriv, out=deriv)
    dh = np.empty((B, H), dtype=W_h.dtype)
    np.multiply(dA[T - 1], deriv[T - 1], out=dA[T - 1])
    for t in range(T - 2, -1, -1):
        np.matmul(dA[t + 1], W_h, out=dh)
        a = dA[t]
        np.add(a, dh, out=a)
        np.multiply(a, deriv[t], out=a)

    dA2 = dA.reshape(TB, H)
    grads["W_h"] = np.matmul(dA2.T, Hs[:-1].reshape(TB, H))
    grads["W_x"] = np.matmul(dA2.T, x.reshape(TB, D))
    grads["b_h"] = dA2.sum(axis=0)
    return loss, {k: grads[k] for k in PARAM_NAMES}, Hs[T].copy()


def clip_grad_norm(grads, max_norm):
    """Scale every gradient in place by min(1, max_norm / (total + 1e-6)).

    ``total`` is the 2-norm over all arrays together, as in
    ``torch.nn.utils.clip_grad_norm_``; it is returned.
    """
    total = math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads.values()))
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads.values():
            g *= coef
    return total


def sgd_step(params, grads, lr):
    """W ← W − lr·grad for every parameter, in place; ``grads`` are consumed (scaled by lr)."""
    for name, W in params.items():
        g = grads[name]
        g *= lr
        W -= g


def train_step(params, x, target, lr, max_norm=5.0):
    """One training step: loss and BPTT, clip_grad_norm(max_norm), SGD. Returns the loss."""
    loss, grads, _ = loss_and_grad(params, x, target)
    clip_grad_norm(grads, max_norm)
    sgd_step(params, grads, lr)
    return loss
