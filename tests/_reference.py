"""A plain-numpy reference implementation of crnn's networks, written to be obviously right.

Everything here follows crnn's contract literally, one sequence and one time
step at a time, in float64, with no vectorisation tricks:

* cells (PyTorch's equations and gate orders), one function pair each:
  ``rnn`` (h = f(W_x x + W_h h + b_h), f = tanh or relu), ``lstm`` (i, f, g, o)
  and ``gru`` (r, z, n, with b_x beside b_h);
* ``num_layers`` layers, each reading the previous one's outputs; with
  ``bidirectional`` a second direction per layer reads each sequence from
  its last valid step back to its first, and a layer's output at t is
  [h_t(fwd); h_t(rev)]; ``masks[l]`` (T, B, H·dirs), when given, multiplies
  layer l's outputs (dropout) before layer l+1 reads them;
* ``x`` is floats (T, B, D), or integer token ids (T, B) that mean one-hot
  vectors (the one-hot vector is built here, on purpose);
* ``lengths[b]`` valid steps for sequence b: steps beyond are simply not
  run, ``y`` is 0 there and nothing is added to the loss;
* head z = W_y·out_t + b_y; targets per step (T, B) classes / (T, B, O)
  values, or per sequence (B,) / (B, O), read from the final states of the
  top layer (forward direction after its last valid step, reverse after
  step 0: PyTorch's h_n);
* per item loss: ``-log softmax(z)[c]`` or ``0.5 * ||z - target||^2``;
  ``reduction="sum"`` is the total, ``"mean"`` divides it by the number of
  counted items.

The gradients are a textbook BPTT per sequence, per step, backwards in time,
through each cell's own derivative. ``params`` has crnn's keys: layer 0's
forward direction W_x, W_h, b_h (GRU also b_x), the others with suffixes
(_reverse, _l1, _l2_reverse, ...), then W_y, b_y. States h0 (and c0) are
(L·dirs, B, H), or (B, H) for a one-layer, one-direction network.
"""

import numpy as np

PARAM_NAMES = ("W_x", "W_h", "b_h", "W_y", "b_y")


def suffix(layer, direction):
    return ("" if layer == 0 else f"_l{layer}") + ("_reverse" if direction else "")


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


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


# -- the cells: forward (returns h, c, what backward needs) and backward ----------------

def rnn_forward(p, x, h, c, nonlinearity):
    a = p["W_x"] @ x + p["W_h"] @ h + p["b_h"]
    return _act(a, nonlinearity), None, (x, h, a)


def rnn_backward(p, cache, dh, dc, nonlinearity, g):
    x, h, a = cache
    da = dh * _act_prime(a, nonlinearity)
    g["W_x"] += np.outer(da, x)
    g["W_h"] += np.outer(da, h)
    g["b_h"] += da
    return p["W_x"].T @ da, p["W_h"].T @ da, None


def lstm_forward(p, x, h, c, nonlinearity):
    H = h.size
    z = p["W_x"] @ x + p["W_h"] @ h + p["b_h"]
    i, f, gg, o = _sigmoid(z[:H]), _sigmoid(z[H:2 * H]), np.tanh(z[2 * H:3 * H]), \
        _sigmoid(z[3 * H:])
    c_new = f * c + i * gg
    h_new = o * np.tanh(c_new)
    return h_new, c_new, (x, h, c, i, f, gg, o, c_new)


def lstm_backward(p, cache, dh, dc, nonlinearity, g):
    x, h, c, i, f, gg, o, c_new = cache
    tc = np.tanh(c_new)
    do = dh * tc
    dc_total = dc + dh * o * (1 - tc ** 2)
    di, df, dg = dc_total * gg, dc_total * c, dc_total * i
    dz = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - gg ** 2),
                         do * o * (1 - o)])
    g["W_x"] += np.outer(dz, x)
    g["W_h"] += np.outer(dz, h)
    g["b_h"] += dz
    return p["W_x"].T @ dz, p["W_h"].T @ dz, dc_total * f


def gru_forward(p, x, h, c, nonlinearity):
    H = h.size
    ax = p["W_x"] @ x + p["b_x"]
    ah = p["W_h"] @ h + p["b_h"]
    r = _sigmoid(ax[:H] + ah[:H])
    z = _sigmoid(ax[H:2 * H] + ah[H:2 * H])
    n = np.tanh(ax[2 * H:] + r * ah[2 * H:])
    h_new = (1 - z) * n + z * h
    return h_new, None, (x, h, r, z, n, ah[2 * H:])


def gru_backward(p, cache, dh, dc, nonlinearity, g):
    x, h, r, z, n, hn = cache
    dn = dh * (1 - z)
    dz = dh * (h - n)
    dan = dn * (1 - n ** 2)             # ∂/∂(W_xn x + b_xn + r ⊙ hn)
    dr = dan * hn
    dar, daz = dr * r * (1 - r), dz * z * (1 - z)
    dax = np.concatenate([dar, daz, dan])
    dah = np.concatenate([dar, daz, dan * r])
    g["W_x"] += np.outer(dax, x)
    g["b_x"] += dax
    g["W_h"] += np.outer(dah, h)
    g["b_h"] += dah
    return p["W_x"].T @ dax, p["W_h"].T @ dah + dh * z, None


CELLS = {"rnn": (rnn_forward, rnn_backward), "lstm": (lstm_forward, lstm_backward),
         "gru": (gru_forward, gru_backward)}


# -- the network, one sequence at a time ---------------------------------------------------

class Net:
    """The parameters and configuration, with per-layer-direction parameter dicts."""

    def __init__(self, params, cell, num_layers, bidirectional, nonlinearity):
        self.cell, self.L, self.nonlinearity = cell, num_layers, nonlinearity
        self.dirs = 2 if bidirectional else 1
        self.p = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
        self.H = self.p["W_h"].shape[1]
        self.D = self.p["W_x"].shape[1]

    def layer(self, l, d):
        s = suffix(l, d)
        return {k: self.p[k + s] for k in ("W_x", "W_h", "b_h", "b_x") if k + s in self.p}


def _states(s, n, B, H):
    """States as (n, B, H) float64 (zeros for None)."""
    if s is None:
        return np.zeros((n, B, H))
    s = np.asarray(s, dtype=np.float64)
    return s[None] if s.ndim == 2 else s


def _split_state(h0, cell):
    if cell == "lstm" and isinstance(h0, (tuple, list)):
        return h0[0], h0[1]
    return h0, None


def _input_vector(x, t, b, D):
    """x_t for sequence b: the float row, or the one-hot vector of a token id."""
    if np.issubdtype(x.dtype, np.integer):
        v = np.zeros(D)
        v[int(x[t, b])] = 1.0
        return v
    return np.asarray(x[t, b], dtype=np.float64)


def _run(net, x, b, n, h0, c0, masks):
    """Forward over the first n steps of sequence b: per layer its outputs, the
    final states and every cell's cache."""
    fwd = CELLS[net.cell][0]
    inputs = [_input_vector(x, t, b, net.D) for t in range(n)]
    layers = []
    for l in range(net.L):
        outs = [[None] * n for _ in range(net.dirs)]
        caches, finals = [], []
        for d in range(net.dirs):
            p = net.layer(l, d)
            i = l * net.dirs + d
            h, c = h0[i, b], c0[i, b]
            cache_d = [None] * n
            for t in (range(n) if d == 0 else range(n - 1, -1, -1)):
                h, c, cache_d[t] = fwd(p, inputs[t], h, c, net.nonlinearity)
                outs[d][t] = h
            caches.append(cache_d)
            finals.append((h, c))
        out = [np.concatenate([outs[d][t] for d in range(net.dirs)]) for t in range(n)]
        mask = None
        if masks is not None and l < net.L - 1:
            mask = [np.asarray(masks[l][t, b], dtype=np.float64) for t in range(n)]
            inputs = [out[t] * mask[t] for t in range(n)]
        else:
            inputs = out
        layers.append({"out": out, "caches": caches, "finals": finals, "mask": mask})
    return layers


def _backward(net, layers, n, d_out, d_final, g):
    """BPTT of one sequence: d_out[t] = ∂L/∂(top outputs at t), d_final[i] = (dh, dc)
    of final states; adds into g (crnn's names); returns ∂L/∂(input vectors), and
    ∂L/∂(initial states) per layer-direction."""
    bwd = CELLS[net.cell][1]
    H = net.H
    d0 = {}
    for l in range(net.L - 1, -1, -1):
        lay = layers[l]
        d_in = None
        for d in range(net.dirs):
            p = net.layer(l, d)
            gl = {k: np.zeros_like(v) for k, v in p.items()}
            i = l * net.dirs + d
            dh, dc = d_final[i]
            dh = dh.copy()
            dc = None if dc is None else dc.copy()
            for t in (range(n - 1, -1, -1) if d == 0 else range(n)):
                dh = dh + d_out[t][d * H:(d + 1) * H]
                dx, dh, dc = bwd(p, lay["caches"][d][t], dh, dc, net.nonlinearity, gl)
                d_in = [None] * n if d_in is None else d_in
                d_in[t] = dx if d_in[t] is None else d_in[t] + dx
            d0[i] = (dh, dc)
            s = suffix(l, d)
            for k, v in gl.items():
                g[k + s] += v
        if l > 0:
            mask = layers[l - 1]["mask"]
            d_out = [d_in[t] * (mask[t] if mask is not None else 1.0) for t in range(n)]
    return d_in, d0


def _item_loss_and_dz(z, target_item, output):
    if output == "softmax":
        m = np.max(z)
        logp = z - (m + np.log(np.sum(np.exp(z - m))))
        c = int(target_item)
        dz = np.exp(logp)
        dz[c] -= 1.0
        return -logp[c], dz
    d = z - np.asarray(target_item, dtype=np.float64)
    return 0.5 * float(d @ d), d


def _setup(params, x, h0, lengths, cell, num_layers, bidirectional, nonlinearity):
    net = Net(params, cell, num_layers, bidirectional, nonlinearity)
    x = np.asarray(x)
    T, B = x.shape[:2]
    h, c = _split_state(h0, cell)
    h0 = _states(h, net.L * net.dirs, B, net.H)
    c0 = _states(c, net.L * net.dirs, B, net.H)
    lens = [T] * B if lengths is None else [int(v) for v in np.asarray(lengths).reshape(-1)]
    return net, x, T, B, h0, c0, lens


def _head_input(net, layers):
    return np.concatenate([layers[-1]["finals"][d][0] for d in range(net.dirs)])


def forward(params, x, h0=None, lengths=None, nonlinearity="tanh", output="softmax", *,
            cell="rnn", num_layers=1, bidirectional=False, masks=None):
    """Return ``(y, h_last)``: y (T, B, O), zero on padding; h_last (B, H) or
    (L·dirs, B, H) (LSTM: the pair (h, c))."""
    net, x, T, B, h0, c0, lens = _setup(params, x, h0, lengths, cell, num_layers,
                                        bidirectional, nonlinearity)
    O = net.p["W_y"].shape[0]
    y = np.zeros((T, B, O))
    hl = np.zeros((net.L * net.dirs, B, net.H))
    cl = np.zeros_like(hl)
    for b in range(B):
        layers = _run(net, x, b, lens[b], h0, c0, masks)
        for t in range(lens[b]):
            z = net.p["W_y"] @ layers[-1]["out"][t] + net.p["b_y"]
            y[t, b] = np.exp(z - z.max()) / np.exp(z - z.max()).sum() if output == "softmax" \
                else z
        _keep_finals(net, layers, b, hl, cl)
    return y, _out_states(hl, cl, net)


def _keep_finals(net, layers, b, hl, cl):
    """Sequence b's final states (h, c) of every layer and direction into hl, cl."""
    for l in range(net.L):
        for d in range(net.dirs):
            h, c = layers[l]["finals"][d]
            hl[l * net.dirs + d, b] = h
            if c is not None:
                cl[l * net.dirs + d, b] = c


def _out_states(h, c, net):
    if net.L * net.dirs == 1:
        h, c = h[0], c[0]
    return (h, c) if net.cell == "lstm" else h


def preactivations(params, x, h0=None, lengths=None, nonlinearity="tanh"):
    """Every Elman pre-activation a_t of every valid step, flattened (to keep relu off its kink)."""
    net, x, T, B, h0, c0, lens = _setup(params, x, h0, lengths, "rnn", 1, False, nonlinearity)
    out = []
    for b in range(B):
        layers = _run(net, x, b, lens[b], h0, c0, None)
        out.extend(cache[2] for cache in layers[0]["caches"][0])
    return np.concatenate(out) if out else np.zeros(0)


def loss_and_grad(params, x, target, h0=None, lengths=None, nonlinearity="tanh",
                  output="softmax", reduction="mean", *, cell="rnn", num_layers=1,
                  bidirectional=False, masks=None):
    """Return ``(loss, grads, h_last)`` with loss a float and grads a dict of float64 arrays."""
    if reduction not in ("sum", "mean"):
        raise ValueError(reduction)
    net, x, T, B, h0, c0, lens = _setup(params, x, h0, lengths, cell, num_layers,
                                        bidirectional, nonlinearity)
    target = np.asarray(target)
    per_step = target.ndim == (2 if output == "softmax" else 3)
    count = sum(lens) if per_step else B
    scale = 1.0 if reduction == "sum" else 1.0 / count
    g = {k: np.zeros_like(v) for k, v in net.p.items()}
    total = 0.0
    n_states = net.L * net.dirs
    hl = np.zeros((n_states, B, net.H))
    cl = np.zeros_like(hl)
    for b in range(B):
        n = lens[b]
        layers = _run(net, x, b, n, h0, c0, masks)
        Hd = net.dirs * net.H
        d_out = [np.zeros(Hd) for _ in range(n)]
        d_final = {i: (np.zeros(net.H), np.zeros(net.H) if cell == "lstm" else None)
                   for i in range(n_states)}
        if per_step:
            for t in range(n):
                zin = layers[-1]["out"][t]
                z = net.p["W_y"] @ zin + net.p["b_y"]
                item, dz = _item_loss_and_dz(z, target[t, b], output)
                total += item
                dz = scale * dz
                g["W_y"] += np.outer(dz, zin)
                g["b_y"] += dz
                d_out[t] = net.p["W_y"].T @ dz
        else:
            zin = _head_input(net, layers)
            z = net.p["W_y"] @ zin + net.p["b_y"]
            item, dz = _item_loss_and_dz(z, target[b], output)
            total += item
            dz = scale * dz
            g["W_y"] += np.outer(dz, zin)
            g["b_y"] += dz
            dzin = net.p["W_y"].T @ dz
            for d in range(net.dirs):
                i = (net.L - 1) * net.dirs + d
                d_final[i] = (dzin[d * net.H:(d + 1) * net.H], d_final[i][1])
        _backward(net, layers, n, d_out, d_final, g)
        _keep_finals(net, layers, b, hl, cl)
    return total * scale, g, _out_states(hl, cl, net)


def loss(params, x, target, **kwargs):
    """The loss alone (for finite differences)."""
    return loss_and_grad(params, x, target, **kwargs)[0]


def stack_backward(params, x, d_outputs, d_final=None, h0=None, lengths=None, *, cell="rnn",
                   num_layers=1, bidirectional=False, nonlinearity="tanh", masks=None):
    """The layer API's backward: given ∂L/∂outputs (T, B, H·dirs) and ∂L/∂(final states)
    ((L·dirs, B, H); LSTM a pair), returns (grads, dx (T, B, D), dh0 (L·dirs, B, H)[, dc0])."""
    net, x, T, B, h0, c0, lens = _setup(params, x, h0, lengths, cell, num_layers,
                                        bidirectional, nonlinearity)
    n_states = net.L * net.dirs
    dh_f, dc_f = _split_state(d_final, cell)
    dh_f = _states(dh_f, n_states, B, net.H)
    dc_f = _states(dc_f, n_states, B, net.H)
    g = {k: np.zeros_like(v) for k, v in net.p.items() if k not in ("W_y", "b_y")}
    dx = np.zeros((T, B, net.D))
    dh0 = np.zeros((n_states, B, net.H))
    dc0 = np.zeros_like(dh0)
    for b in range(B):
        n = lens[b]
        layers = _run(net, x, b, n, h0, c0, masks)
        d_out = [np.asarray(d_outputs[t, b], dtype=np.float64) for t in range(n)]
        d_final = {i: (dh_f[i, b], dc_f[i, b] if cell == "lstm" else None)
                   for i in range(n_states)}
        d_in, d0 = _backward(net, layers, n, d_out, d_final, g)
        for t in range(n):
            dx[t, b] = d_in[t]
        for i, (dh, dc) in d0.items():
            dh0[i, b] = dh
            if dc is not None:
                dc0[i, b] = dc
    return g, dx, _out_states(dh0, dc0, net)
