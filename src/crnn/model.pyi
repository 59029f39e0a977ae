# Types of crnn.model (src/crnn/model.py); the documentation is in the module.
# Arrays are typed loosely on purpose: inputs take anything numpy converts
# (the checks in the module say what shapes and dtypes are accepted), and
# outputs have the model's dtype, float32 or float64.
from collections.abc import Iterable, Sequence
from os import PathLike
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt

from crnn.callbacks import Callback
from crnn.optim import Optimizer

__all__ = ["RNN", "load"]

_Floats = npt.NDArray[np.floating[Any]]
_Seed = int | np.random.Generator | None
_Path = str | PathLike[str]

class RNN:
    input_size: int
    hidden_size: int
    output_size: int
    nonlinearity: Literal["tanh", "relu"]
    output: Literal["softmax", "linear"]
    dtype: np.dtype[np.floating[Any]]
    params: dict[str, _Floats]
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        nonlinearity: Literal["tanh", "relu"] = "tanh",
        output: Literal["softmax", "linear"] = "softmax",
        dtype: npt.DTypeLike = "float32",
        seed: _Seed = None,
    ) -> None: ...
    def forward(
        self, x: npt.ArrayLike, h0: npt.ArrayLike | None = None, lengths: npt.ArrayLike | None = None
    ) -> tuple[_Floats, _Floats]: ...
    def predict(self, x: npt.ArrayLike, lengths: npt.ArrayLike | None = None) -> _Floats: ...
    def step(self, x_t: npt.ArrayLike, h: npt.ArrayLike | None = None) -> tuple[_Floats, _Floats]: ...
    def generate(
        self,
        length: int,
        *,
        prime: Sequence[int] | npt.ArrayLike | None = None,
        temperature: float = 1.0,
        seed: _Seed = None,
    ) -> npt.NDArray[np.intp]: ...
    @overload
    def loss_and_grad(
        self,
        x: npt.ArrayLike,
        target: npt.ArrayLike,
        h0: npt.ArrayLike | None = None,
        lengths: npt.ArrayLike | None = None,
        reduction: Literal["mean", "sum"] = "mean",
        return_hidden_grads: Literal[False] = False,
    ) -> tuple[float, dict[str, _Floats], _Floats]: ...
    @overload
    def loss_and_grad(
        self,
        x: npt.ArrayLike,
        target: npt.ArrayLike,
        h0: npt.ArrayLike | None = None,
        lengths: npt.ArrayLike | None = None,
        reduction: Literal["mean", "sum"] = "mean",
        *,
        return_hidden_grads: Literal[True],
    ) -> tuple[float, dict[str, _Floats], _Floats, npt.NDArray[np.float64]]: ...
    @overload
    def loss_and_grad(
        self,
        x: npt.ArrayLike,
        target: npt.ArrayLike,
        h0: npt.ArrayLike | None,
        lengths: npt.ArrayLike | None,
        reduction: Literal["mean", "sum"],
        return_hidden_grads: Literal[True],
    ) -> tuple[float, dict[str, _Floats], _Floats, npt.NDArray[np.float64]]: ...
    @overload
    def loss_and_grad(
        self,
        x: npt.ArrayLike,
        target: npt.ArrayLike,
        h0: npt.ArrayLike | None = None,
        lengths: npt.ArrayLike | None = None,
        reduction: Literal["mean", "sum"] = "mean",
        return_hidden_grads: bool = False,
    ) -> (
        tuple[float, dict[str, _Floats], _Floats]
        | tuple[float, dict[str, _Floats], _Floats, npt.NDArray[np.float64]]
    ): ...
    def fit(
        self,
        x: npt.ArrayLike,
        target: npt.ArrayLike,
        *,
        epochs: int = 1,
        batch_size: int = 32,
        optimizer: str | Optimizer = "sgd",
        lr: float = 0.01,
        clip_norm: float | None = None,
        clip_value: float | None = None,
        lengths: npt.ArrayLike | None = None,
        validation_data: tuple[npt.ArrayLike, npt.ArrayLike]
        | tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike | None]
        | None = None,
        bptt: int | None = None,
        callbacks: Callback | Iterable[Callback] | None = (),
        shuffle: bool = True,
        seed: _Seed = None,
        verbose: int = 1,
    ) -> dict[str, list[float]]: ...
    def save(self, path: _Path) -> None: ...

def load(path: _Path) -> RNN: ...
