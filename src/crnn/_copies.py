"""Pickling and copying the networks: ``pickle``, ``copy.deepcopy``, ``copy.copy``.

A network's compiled engine cannot be pickled, and its parameters are views
of one flat vector, which pickle would turn into separate arrays. So the
engine, the flat vector and its views are left out and made again on load,
and the pickled arrays are copied into the new views. The ``params`` dict
is the same object before and after: an optimizer built on ``model.params``
and pickled (or deep-copied) with the model holds that dict, and so the new
model's arrays. An optimizer built on another container of the arrays (a
list of them, or ``model.stack.params`` of a model with a head, a dict of
its own) gets copies instead, as numpy arrays always pickle.
"""

from collections.abc import Callable
from typing import Any

import numpy as np


class Copies:
    """The pickling and copying of crnn's networks (a mixin of ``model._Network``)."""

    # What the model class provides.
    params: Any
    _views: dict[str, Any]
    _build: Callable[[], None]

    def __getstate__(self):
        state = self.__dict__.copy()
        for cache in ("_engine", "_flat", "_views", "_dW"):
            state.pop(cache, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._build()
        # In place, for the optimizers that hold this dict. An entry the user replaced
        # is taken in as _sync would; one it would refuse stays, for the next call to
        # refuse.
        for name, view in self._views.items():
            value = self.params.get(name) if isinstance(self.params, dict) else None
            if (isinstance(value, np.ndarray) and value.dtype.kind == "f"
                    and value.shape == view.shape):
                with np.errstate(over="ignore"):
                    view[...] = value
                self.params[name] = view

    def __copy__(self):
        """A shallow copy shares everything, the parameters included."""
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new
