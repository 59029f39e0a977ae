"""Callbacks for ``RNN.fit``: code that runs at the start, after each epoch and at the end."""

import math

import numpy as np

from crnn import _checks

__all__ = ["Callback", "EarlyStopping"]


class Callback:
    """Base class. Override any of the three hooks.

    ``on_epoch_end`` receives the history so far (a dict of per-epoch lists,
    as returned by ``fit``) and returns True to stop training.
    """

    def on_train_begin(self, model):
        """Called once before the first epoch."""

    def on_epoch_end(self, model, epoch, history):
        """Called after each epoch (``epoch`` counts from 0); return True to stop."""
        return False

    def on_train_end(self, model):
        """Called once after the last epoch, also when a callback stopped training."""


class EarlyStopping(Callback):
    """Stop when a monitored value has stopped improving.

    Parameters
    ----------
    monitor : str, default "val_loss"
        A key of the history: "loss", "val_loss" or "val_accuracy".
    patience : int, default 5
        Epochs without improvement before stopping.
    min_delta : float, default 0
        The smallest change that counts as an improvement.
    mode : {"auto", "min", "max"}, default "auto"
        Whether lower or higher is better; "auto" means higher for
        accuracies and lower otherwise.
    restore_best_weights : bool, default True
        At the end, put back the parameters of the best epoch.

    Attributes
    ----------
    best : float
        The best value seen.
    best_epoch : int
        The epoch (from 0) where it was seen.
    stopped_epoch : int or None
        The epoch after which training stopped, or None.
    """

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, mode="auto",
                 restore_best_weights=True):
        if not isinstance(monitor, str):
            raise TypeError(f"monitor: expected a history key such as 'val_loss', "
                            f"got {monitor!r}")
        self.monitor = monitor
        self.patience = _checks.positive_int(patience, "patience")
        self.min_delta = _checks.positive_float(min_delta, "min_delta", allow_zero=True)
        mode = _checks.choice(mode, "mode", ("auto", "min", "max"))
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.restore_best_weights = bool(restore_best_weights)

    def on_train_begin(self, model):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = -1
        self.stopped_epoch = None
        self._wait = 0
        self._best_params = None

    def on_epoch_end(self, model, epoch, history):
        if self.monitor not in history:
            raise ValueError(f"monitor: {self.monitor!r} is not in the history "
                             f"(keys: {sorted(history)}); pass validation_data to fit "
                             f"to monitor val_loss or val_accuracy")
        value = history[self.monitor][-1]
        better = value < self.best - self.min_delta if self.mode == "min" \
            else value > self.best + self.min_delta
        if better:
            self.best, self.best_epoch, self._wait = value, epoch, 0
            if self.restore_best_weights:
                self._best_params = {k: np.copy(v) for k, v in model.params.items()}
            return False
        self._wait += 1
        if self._wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def on_train_end(self, model):
        if self.restore_best_weights and self._best_params is not None:
            for key, value in self._best_params.items():
                model.params[key][...] = value


def check(callbacks):
    """The callbacks as a list, each checked to be a Callback."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    try:
        callbacks = list(callbacks)
    except TypeError:
        raise TypeError(f"callbacks: expected a sequence of crnn.callbacks.Callback, got "
                        f"{callbacks!r} of type {type(callbacks).__name__}") from None
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks: expected crnn.callbacks.Callback instances, "
                            f"got {type(cb).__name__}")
    return callbacks
