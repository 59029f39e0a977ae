"""A plain-numpy reference implementation of crnn's Elman RNN, written to be obviously right.

Everything here follows the contract of issue 2 literally, one sequence and
one time step at a time, in float64, with no vectorisation tricks:

    h_t = f(W_x x_t + W_h h_{t-1} + b_h)      f = tanh or relu
    z_t = W_y h_t + b_y                        y_t = softmax(z_t) or z_t

* ``x`` is floats (T, B, D), or integer token ids (T, B) that mean one-hot
  vectors (the one-hot vector is built here, on purpose).
* ``lengths[b]`` valid steps for sequence b; at padding steps the state is
  carried unchanged, ``y`` is 0 and nothing is added to the loss or gradients.
  ``h_last[b]`` is the state after the last valid step.
* targets: per step (T, B) classes / (T, B, O) values, or per sequence
  (B,) / (B, O), scored at the sequence's last valid step.
* per item loss: ``-log softmax(z)[c]`` or ``0.5 * ||z - target||^2``;
  ``reduction="sum"`` is the total, ``"mean"`` divides it by the number of
  counted (t, b) items.

The gradients are a textbook BPTT per sequence, per step, backwards in time.
``params`` is a dict with keys W_x (H, D), W_h (H, H), b_h (H,), W_y (O, H),
b_y (O,).
"""

import numpy as np

PARAM_NAMES = ("W_x", "W_h", "b_h", "W_y", "b_y")


def _as64(params):
    return {k: np.array(params[k], dtype=np.float64) for k in PARAM_NAMES}


def _act(a, nonlinearity):
    if nonlinearity == "tanh":
        return np.tanh(a)
    if nonlinearity == "relu":
        return np.maximum(a, 0.0)
    raise ValueError(nonlinearity)


def _act_prime(a, nonlinearity):
    """f'(a) at the pre-activation a (relu' = 1 where a > 0, else 0)."""
    if nonlinearity == "tanh":
        return 1.0 - np.tanh(a) ** 2
    return (a > 0).astype(np.float64)


def _log_softmax(z):
    m = np.max(z)
    return z - (m + np.log(np.sum(np.exp(z - m))))


def _input_vector(x, t, b, D):
    """x_t for sequence b: the float row, or the one-hot vector of a token id."""
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.integer):
        v = np.zeros(D)
        v[int(x[t, b])] = 1.0
        return v
    return np.asarray(x[t, b], dtype=np.float64)


def _sizes(p, x):
    H, D = p["W_x"].shape
    O = p["W_y"].shape[0]
    x = np.asarray(x)
    T, B = x.shape[0], x.shape[1]
    return T, B, D, H, O


def _lengths(lengths, T, B):
    if lengths is None:
        return [T] * B
    return [int(n) for n in np.asarray(lengths).reshape(-1)]


def _run_sequence(p, x, b, h0b, n, nonlinearity):
    """Forward over the first n steps of sequence b: pre-activations, states, inputs."""
    D = p["W_x"].shape[1]
    hs = [np.array(h0b, dtype=np.float64)]
    pre, xs = [], []
    for t in range(n):
        xt = _input_vector(x, t, b, D)
        a = p["W_x"] @ xt + p["W_h"] @ hs[-1] + p["b_h"]
        xs.append(xt)
        pre.append(a)
        hs.append(_act(a, nonlinearity))
    return pre, hs, xs


def forward(params, x, h0=None, lengths=None, nonlinearity="tanh", output="softmax"):
    """Return ``(y, h_last)``: y (T, B, O), zero on padding; h_last (B, H)."""
    p = _as64(params)
    T, B, D, H, O = _sizes(p, x)
    h0 = np.zeros((B, H)) if h0 is None else np.asarray(h0, dtype=np.float64)
    lens = _lengths(lengths, T, B)
    y = np.zeros((T, B, O))
    h_last = np.zeros((B, H))
    for b in range(B):
        _, hs, _ = _run_sequence(p, x, b, h0[b], lens[b], nonlinearity)
        for t in range(lens[b]):
            z = p["W_y"] @ hs[t + 1] + p["b_y"]
            y[t, b] = np.exp(_log_softmax(z)) if output == "softmax" else z
        h_last[b] = hs[lens[b]]
    return y, h_last


def preactivations(params, x, h0=None, lengths=None, nonlinearity="tanh"):
    """Every pre-activation a_t of every valid step, flattened (to keep relu off its kink)."""
    p = _as64(params)
    T, B, D, H, O = _sizes(p, x)
    h0 = np.zeros((B, H)) if h0 is None else np.asarray(h0, dtype=np.float64)
    lens = _lengths(lengths, T, B)
    out = []
    for b in range(B):
        pre, _, _ = _run_sequence(p, x, b, h0[b], lens[b], nonlinearity)
        out.extend(pre)
    return np.concatenate(out) if out else np.zeros(0)


def _item_loss_and_dz(z, target_item, output):
    """Loss of one scored item and its gradient with respect to the logits z."""
    if output == "softmax":
        logp = _log_softmax(z)
        c = int(target_item)
        dz = np.exp(logp)
        dz[c] -= 1.0
        return -logp[c], dz
    d = z - np.asarray(target_item, dtype=np.float64)
    return 0.5 * float(d @ d), d


def loss_and_grad(params, x, target, h0=None, lengths=None, nonlinearity="tanh",
                  output="softmax", reduction="mean"):
    """Return ``(loss, grads, h_last)`` with loss a float and grads a dict of float64 arrays."""
    p = _as64(params)
    T, B, D, H, O = _sizes(p, x)
    h0 = np.zeros((B, H)) if h0 is None else np.asarray(h0, dtype=np.float64)
    lens = _lengths(lengths, T, B)
    target = np.asarray(target)
    per_step = target.ndim == (2 if output == "softmax" else 3)

    def scored(t, b):
        return per_step or t == lens[b] - 1

    def target_at(t, b):
        return target[t, b] if per_step else target[b]

    count = sum(lens) if per_step else B
    scale = 1.0 if reduction == "sum" else 1.0 / count
    if reduction not in ("sum", "mean"):
        raise ValueError(reduction)

    grads = {k: np.zeros_like(p[k]) for k in PARAM_NAMES}
    total = 0.0
    h_last = np.zeros((B, H))
    for b in range(B):
        n = lens[b]
        pre, hs, xs = _run_sequence(p, x, b, h0[b], n, nonlinearity)
        h_last[b] = hs[n]
        dh_next = np.zeros(H)  # dL/dh_t arriving from step t+1
        for t in range(n - 1, -1, -1):
            dh = dh_next.copy()
            if scored(t, b):
                z = p["W_y"] @ hs[t + 1] + p["b_y"]
                item, dz = _item_loss_and_dz(z, target_at(t, b), output)
                total += item
                dz = scale * dz
                grads["W_y"] += np.outer(dz, hs[t + 1])
                grads["b_y"] += dz
                dh += p["W_y"].T @ dz
            da = dh * _act_prime(pre[t], nonlinearity)
            grads["W_x"] += np.outer(da, xs[t])
            grads["W_h"] += np.outer(da, hs[t])
            grads["b_h"] += da
            dh_next = p["W_h"].T @ da
    return total * scale, grads, h_last


def loss(params, x, target, **kwargs):
    """The loss alone (for finite differences)."""
    return loss_and_grad(params, x, target, **kwargs)[0]
