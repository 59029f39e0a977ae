"""Streaming inference: ``step`` (one time step) and ``generate`` (sampling, each
token fed back), shared by every model class through :class:`Sampling`."""

import warnings
from typing import Any, Callable

import numpy as np

from crnn import _checks, _data

_MAX_LENGTH = 2**31 - 1     # tokens one generate call may sample
_NOT_FINITE = ("generate: the model's outputs are NaN or infinite (are its "
               "weights finite?): there is nothing to sample from")


def _sample(p, temperature, rng):
    """A token id drawn from p^(1/τ), renormalised (τ = temperature): softmax(z/τ)
    from p = softmax(z), computed in log space as exp((log p − max log p)/τ),
    which is 1 at the top and never overflows. τ = 0 is the argmax; tiny τ
    reach it too (every other term underflows to 0). Probabilities that are not
    finite (NaN or infinite weights) raise ValueError: the sum that draws the
    token shows them, so no pass of its own is spent on the check."""
    if temperature == 0:
        if not np.isfinite(p.sum()):
            raise ValueError(_NOT_FINITE)
        return int(np.argmax(p))
    if temperature != 1.0:
        with np.errstate(divide="ignore", over="ignore", under="ignore", invalid="ignore"):
            logp = np.log(p)
            p = np.exp((logp - logp.max()) / temperature)
    cdf = np.cumsum(p)
    if not np.isfinite(cdf[-1]):
        raise ValueError(_NOT_FINITE)
    return min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(p) - 1)


class Sampling:
    """``step`` and ``generate`` of :class:`crnn.model._Network` (one-direction models)."""

    # What the model class provides.
    input_size: int
    output_size: int
    output: Any
    dtype: Any
    _engine: Any
    _out: int
    _sync: Callable[[], Any]
    _new_states: Callable[[int], Any]
    _states_out: Callable[..., Any]
    _one_direction: Callable[[str], None]

    def step(self, x_t, h=None):
        """Advance the network by one time step (streaming inference).

        Parameters
        ----------
        x_t : array (B, D) of floats, or (B,) of integer token ids
        h : states before the step, as ``h0`` of :meth:`forward`; zeros when omitted.

        Returns
        -------
        y_t : ndarray (B, O)
            The outputs at this step (probabilities or values).
        h : the states after it, to pass to the next call.

        ``y_t, h = model.step(x_t, h)`` over t gives the same outputs as one
        ``forward`` over the whole sequence. For one-direction models only.
        """
        self._one_direction("step")
        x_t = _checks._as_array(x_t, "x_t")
        D = self.input_size
        tokens = x_t.dtype.kind in "iu"
        if not (x_t.ndim == 1 and tokens or x_t.ndim == 2 and not tokens and x_t.shape[1] == D):
            raise ValueError(f"x_t: expected floats of shape (B, {D}) or token ids of shape "
                             f"(B,), got {x_t.dtype} array of shape {_checks._shape_str(x_t.shape)}")
        if x_t.shape[0] == 0:
            raise ValueError(f"x_t: expected at least one sequence (B >= 1), got shape "
                             f"{_checks._shape_str(x_t.shape)}")
        if tokens and (x_t.min() < 0 or x_t.max() >= D):
            raise ValueError(f"x_t: token ids must lie in [0, {D}), got values in "
                             f"[{x_t.min()}, {x_t.max()}]")
        W = self._sync()
        data = _data.prepare(self, x_t[None], h, None, finite=False, h0_name="h",
                             batch_first=False)
        y = np.empty((1, data.B, self.output_size), dtype=self.dtype)
        hn, cn = self._new_states(data.B)
        self._engine.forward(W, data.X, data.tokens, data.B, np.full(1, data.B, np.intp), None,
                             data.h0, data.c0, self._out, y, hn, cn)
        if not _checks._all_finite(y):
            warnings.warn("step: the outputs are NaN or infinite (are the weights, the state "
                          "and x_t finite?)", RuntimeWarning, stacklevel=2)
        return y[0], self._states_out(hn, cn, None)

    def generate(self, length, *, prime=None, temperature=1.0, seed=None):
        """Sample a sequence of token ids, feeding each sample back as the next input.

        For a one-direction softmax model over a vocabulary, with
        ``input_size == output_size`` (e.g. a character model).

        Parameters
        ----------
        length : int
            How many new tokens to sample.
        prime : sequence of int, optional
            Token ids fed first, to set the state; not part of the result.
            When omitted, the first input is drawn uniformly at random.
        temperature : float, default 1.0
            Sampling from softmax(z / temperature): lower is more
            conservative, higher more varied; 0 is greedy decoding (always
            the most likely token, the first of ties), as is the limit of
            tiny temperatures (which draw among exact ties).
        seed : int or numpy Generator, optional
            The same seed gives the same sequence.

        Returns
        -------
        tokens : ndarray (length,) of int

        Raises ValueError when the model's outputs are not finite (NaN or
        infinite weights): there is nothing to sample from.
        """
        tokens = self._generate(length, prime, temperature, seed)
        # Grown as sampled beyond a million (a huge length fails when memory does, not before).
        return np.fromiter(tokens, dtype=np.intp, count=length if length <= 1 << 20 else -1)

    def _generate(self, length, prime, temperature, seed):
        """The tokens of :meth:`generate`, one at a time, as they are sampled (checked
        before the first is drawn)."""
        self._one_direction("generate")
        if self.output != "softmax" or self.input_size != self.output_size:
            raise ValueError(f"generate: needs a softmax model with input_size == output_size, "
                             f"got output={self.output!r}, input_size={self.input_size}, "
                             f"output_size={self.output_size}")
        length = _checks.positive_int(length, "length")
        if length > _MAX_LENGTH:
            raise ValueError(f"length: expected at most {_MAX_LENGTH} tokens, got {length}")
        temperature = _checks.positive_float(temperature, "temperature", allow_zero=True)
        rng = _checks.rng(seed, "seed")
        V = self.output_size
        if prime is None:
            prime = rng.integers(V, size=1)
        prime = _checks._as_array(prime, "prime")
        if prime.dtype.kind not in "iu" or prime.ndim != 1 or prime.size == 0:
            raise ValueError(f"prime: expected a non-empty 1-D sequence of token ids, got "
                             f"{prime.dtype} array of shape {_checks._shape_str(prime.shape)}")
        if prime.min() < 0 or prime.max() >= V:
            raise ValueError(f"prime: token ids must lie in [0, {V}), "
                             f"got values in [{prime.min()}, {prime.max()}]")
        W = self._sync()
        run = self._engine.forward
        tokens = np.ascontiguousarray(prime, dtype=np.intp)
        h, c = self._new_states(1)
        h2, c2 = self._new_states(1)
        y = np.empty((len(tokens), 1, V), dtype=self.dtype)
        run(W, None, tokens, 1, np.ones(len(tokens), np.intp), None, None, None, self._out, y, h, c)
        p = y[-1, 0].astype(np.float64)
        one = np.ones(1, dtype=np.intp)
        fed = np.empty(1, dtype=np.intp)        # the token fed back, reused every step
        y = np.empty((1, 1, V), dtype=self.dtype)
        return self._sample_loop(length, p, temperature, rng, W, h, c, h2, c2, one, fed, y)

    def _sample_loop(self, length, p, temperature, rng, W, h, c, h2, c2, one, fed, y):
        run = self._engine.forward
        for i in range(length):
            token = _sample(p, temperature, rng)
            yield token
            if i + 1 < length:
                fed[0] = token
                run(W, None, fed, 1, one, None, h, c, self._out, y, h2, c2)
                h, h2, c, c2 = h2, h, c2, c
                p = y[0, 0].astype(np.float64)
