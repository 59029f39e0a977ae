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


class Copies:
    """The pickling and copying of crnn's networks (a mixin of ``model._Network``)."""

    # What the model class provides.
    _build: Callable[[], None]
    _sync: Callable[[], Any]

    def __getstate__(self):
        state = self.__dict__.copy()
        for cache in ("_engine", "_flat", "_views", "_dW"):
            state.pop(cache, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._build()
        # The pickled arrays are entries of params that are not the model's views: _sync
        # copies them in and puts the views in their place, in the same dict (which the
        # optimizers built on it hold). Entries it refuses stay, for the next call to
        # refuse with the same message.
        try:
            self._sync()
        except ValueError:
            pass

    def __copy__(self):
        """A shallow copy shares everything, the parameters included."""
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new
