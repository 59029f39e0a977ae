# Types of crnn.callbacks (src/crnn/callbacks.py); the documentation is in the module.
from collections.abc import Iterable
from typing import Literal

from crnn.model import RNN

__all__ = ["Callback", "EarlyStopping"]

class Callback:
    def on_train_begin(self, model: RNN) -> None: ...
    def on_epoch_end(self, model: RNN, epoch: int, history: dict[str, list[float]]) -> bool | None: ...
    def on_train_end(self, model: RNN) -> None: ...

class EarlyStopping(Callback):
    monitor: str
    patience: int
    min_delta: float
    mode: Literal["min", "max"]
    restore_best_weights: bool
    best: float
    best_epoch: int
    stopped_epoch: int | None
    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 5,
        min_delta: float = 0.0,
        mode: Literal["auto", "min", "max"] = "auto",
        restore_best_weights: bool = True,
    ) -> None: ...
    def on_epoch_end(self, model: RNN, epoch: int, history: dict[str, list[float]]) -> bool: ...

def check(callbacks: Callback | Iterable[Callback] | None) -> list[Callback]: ...
