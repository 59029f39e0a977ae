"""PyTorch weights in and out: ``crnn.from_torch`` and ``model.to_torch()``.

crnn's cells follow PyTorch's equations and gate orders, so the arrays move
unchanged, with two differences of layout:

- PyTorch's RNN and LSTM add two biases, b_ih + b_hh, where crnn keeps their
  sum, ``b_h``; ``to_torch`` puts it in ``bias_ih`` and zeros in ``bias_hh``
  (the same outputs). The GRU keeps both in both: ``b_x`` is ``bias_ih``,
  ``b_h`` is ``bias_hh``.
- ``bias=False`` has no counterpart: the crnn model's biases are zeros (and
  stay trainable).

torch is imported only inside these functions.
"""

from typing import Any

import numpy as np

_KINDS: dict[str, Any] = {"RNN": "rnn", "LSTM": "lstm", "GRU": "gru"}


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("PyTorch interop needs torch (pip install torch)") from None
    return torch


def _suffix(layer, reverse):
    """crnn's name suffix of a layer and direction ('' for layer 0 forward)."""
    return (f"_l{layer}" if layer else "") + ("_reverse" if reverse else "")


def from_torch(rnn, linear=None, *, output="softmax"):
    """The crnn network equal to a ``torch.nn.RNN``, ``LSTM`` or ``GRU``.

    Parameters
    ----------
    rnn : torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU
        Any ``num_layers``, ``bidirectional``, ``bias``, ``batch_first``
        (``proj_size`` is not supported); float32 or float64 parameters.
    linear : torch.nn.Linear, optional
        The head, ``Linear(hidden_size·dirs, O)``: a crnn.RNN/LSTM/GRU with
        output size O (and the module's ``batch_first``). Without it, the
        recurrent layers alone (:class:`crnn.layers.Stack`, whose data is
        time-major whatever ``batch_first`` says).
    output : {"softmax", "linear"}, default "softmax"
        The head's output function.

    Returns
    -------
    crnn.RNN, crnn.LSTM or crnn.GRU (with ``linear``), else crnn.layers.Stack
        With copies of the weights: float64 modules agree with crnn's
        forward to 1e-12.
    """
    torch = _torch()
    from crnn import layers, model as _model
    kind = _KINDS.get(type(rnn).__name__) if isinstance(rnn, torch.nn.RNNBase) else None
    if kind is None:
        raise TypeError(f"rnn: expected a torch.nn.RNN, LSTM or GRU, got {type(rnn).__name__}")
    if getattr(rnn, "proj_size", 0):
        raise ValueError(f"rnn: LSTMs with proj_size > 0 are not supported, got "
                         f"proj_size={rnn.proj_size}")
    weights = {k: v.detach().cpu().numpy() for k, v in rnn.named_parameters()}
    dtype = next(iter(weights.values())).dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"rnn: expected float32 or float64 parameters, got {dtype}")
    options = dict(num_layers=rnn.num_layers, bidirectional=rnn.bidirectional,
                   dropout=float(rnn.dropout), dtype=dtype.name,
                   batch_first=bool(rnn.batch_first))
    if kind == "rnn":
        options["nonlinearity"] = rnn.nonlinearity
    H, D = rnn.hidden_size, rnn.input_size
    if linear is None:
        options.pop("batch_first")
        net = layers.Stack(kind, D, H, **options)
        params = net.params
    else:
        if not isinstance(linear, torch.nn.Linear):
            raise TypeError(f"linear: expected a torch.nn.Linear, got {type(linear).__name__}")
        dirs = 2 if rnn.bidirectional else 1
        if linear.in_features != dirs * H:
            raise ValueError(f"linear: expected in_features = hidden_size·dirs = {dirs * H}, "
                             f"got {linear.in_features}")
        cls = {"rnn": _model.RNN, "lstm": _model.LSTM, "gru": _model.GRU}[kind]
        net = cls(D, H, linear.out_features, output=output, **options)
        params = net.params
        params["W_y"][...] = linear.weight.detach().cpu().numpy()
        params["b_y"][...] = 0 if linear.bias is None else linear.bias.detach().cpu().numpy()
    for layer in range(rnn.num_layers):
        for reverse in range(2 if rnn.bidirectional else 1):
            t = f"_l{layer}" + ("_reverse" if reverse else "")
            c = _suffix(layer, reverse)
            params["W_x" + c][...] = weights["weight_ih" + t]
            params["W_h" + c][...] = weights["weight_hh" + t]
            b_ih = weights.get("bias_ih" + t, 0)
            b_hh = weights.get("bias_hh" + t, 0)
            if kind == "gru":
                params["b_x" + c][...] = b_ih
                params["b_h" + c][...] = b_hh
            else:
                params["b_h" + c][...] = np.add(b_ih, b_hh, dtype=np.float64)
    return net


def to_torch(net):
    """``(rnn, linear)``: the torch.nn module equal to a crnn network (see from_torch);
    ``linear`` is None for a crnn.layers.Stack."""
    torch = _torch()
    kind = net.cell if hasattr(net, "cell") else net._cell
    inner = getattr(net, "_net", net)
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    options = dict(num_layers=inner.num_layers, bidirectional=inner.bidirectional,
                   dropout=inner.dropout, batch_first=bool(inner.batch_first))
    if kind == "rnn":
        options["nonlinearity"] = inner.nonlinearity
    tdtype = torch.float64 if inner.dtype == np.float64 else torch.float32
    rnn = cls(inner.input_size, inner.hidden_size, dtype=tdtype, **options)
    params = net.params
    with torch.no_grad():
        for layer in range(inner.num_layers):
            for reverse in range(2 if inner.bidirectional else 1):
                t = f"_l{layer}" + ("_reverse" if reverse else "")
                c = _suffix(layer, reverse)
                getattr(rnn, "weight_ih" + t).copy_(torch.from_numpy(params["W_x" + c]))
                getattr(rnn, "weight_hh" + t).copy_(torch.from_numpy(params["W_h" + c]))
                if kind == "gru":
                    getattr(rnn, "bias_ih" + t).copy_(torch.from_numpy(params["b_x" + c]))
                    getattr(rnn, "bias_hh" + t).copy_(torch.from_numpy(params["b_h" + c]))
                else:
                    getattr(rnn, "bias_ih" + t).copy_(torch.from_numpy(params["b_h" + c]))
                    getattr(rnn, "bias_hh" + t).zero_()
        linear = None
        if "W_y" in params:
            O, Hd = params["W_y"].shape
            linear = torch.nn.Linear(Hd, O, dtype=tdtype)
            linear.weight.copy_(torch.from_numpy(params["W_y"]))
            linear.bias.copy_(torch.from_numpy(params["b_y"]))
    return rnn, linear
