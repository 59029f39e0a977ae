# Types of crnn.model (src/crnn/model.py); the documentation is in the module.
# Arrays are typed loosely on purpose: inputs take anything numpy converts
# (the checks in the module say what shapes and dtypes are accepted), and
# outputs have the model's dtype, float32 or float64.
from collections.abc import Iterable, Sequence
from os import PathLike
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt
from typing_extensions import Self

from crnn.callbacks import Callback
from crnn.layers import Stack
from crnn.optim import Optimizer

__all__ = ["RNN", "LSTM", "GRU", "load"]

_Floats = npt.NDArray[np.floating[Any]]
_Seed = int | np.random.Generator | None
_Path = str | PathLike[str]
# A state: an array, or for the LSTM a pair (h, c).
_State = _Floats | tuple[_Floats, _Floats]
_StateIn = npt.ArrayLike | tuple[npt.ArrayLike | None, npt.ArrayLike | None]

class _Network:
    input_size: int
    hidden_size: int
    output_size: int
    num_layers: int
    bidirectional: bool
    dropout: float
    batch_first: bool
    output: Literal["softmax", "linear"]
    dtype: np.dtype[np.floating[Any]]
    params: dict[str, _Floats]
    history: dict[str, list[float]] | None
    def __copy__(self) -> Self: ...
    @property
    def stack(self) -> Stack: ...
    def forward(
        self, x: npt.ArrayLike, h0: _StateIn | None = None, lengths: npt.ArrayLike | None = None
    ) -> tuple[_Floats, _State]: ...
    def predict(self, x: npt.ArrayLike, lengths: npt.ArrayLike | None = None) -> _Floats: ...
    def step(self, x_t: npt.ArrayLike, h: _StateIn | None = None) -> tuple[_Floats, _State]: ...
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
        h0: _StateIn | None = None,
        lengths: npt.ArrayLike | None = None,
        reduction: Literal["mean", "sum"] = "mean",
        return_hidden_grads: Literal[False] = False,
        *,
        seed: _Seed = None,
    ) -> tuple[float, dict[str, _Floats], _State]: ...
    @overload
    def loss_and_grad(
        self,
        x: npt.ArrayLike,
        target: npt.ArrayLike,
        h0: _StateIn | None = None,
        lengths: npt.ArrayLike | None = None,
        reduction: Literal["mean", "sum"] = "mean",
        *,
        return_hidden_grads: Literal[True],
        seed: _Seed = None,
    ) -> tuple[float, dict[str, _Floats], _State, npt.NDArray[np.float64]]: ...
    @overload
    def loss_and_grad(
        self,
        x: npt.ArrayLike,
        target: npt.ArrayLike,
        h0: _StateIn | None,
        lengths: npt.ArrayLike | None,
        reduction: Literal["mean", "sum"],
        return_hidden_grads: Literal[True],
        *,
        seed: _Seed = None,
    ) -> tuple[float, dict[str, _Floats], _State, npt.NDArray[np.float64]]: ...
    @overload
    def loss_and_grad(
        self,
        x: npt.ArrayLike,
        target: npt.ArrayLike,
        h0: _StateIn | None = None,
        lengths: npt.ArrayLike | None = None,
        reduction: Literal["mean", "sum"] = "mean",
        return_hidden_grads: bool = False,
        *,
        seed: _Seed = None,
    ) -> (
        tuple[float, dict[str, _Floats], _State]
        | tuple[float, dict[str, _Floats], _State, npt.NDArray[np.float64]]
    ): ...
    def train_step(
        self,
        x: npt.ArrayLike,
        target: npt.ArrayLike,
        optimizer: Optimizer,
        *,
        clip_norm: float | None = None,
        clip_value: float | None = None,
        h0: _StateIn | None = None,
        lengths: npt.ArrayLike | None = None,
        reduction: Literal["mean", "sum"] = "mean",
        seed: _Seed = None,
    ) -> float: ...
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
        comm: Any = None,
    ) -> dict[str, list[float]]: ...
    def to_torch(self) -> tuple[Any, Any]: ...
    def to_onnx(
        self,
        path: _Path,
        *,
        tokens: bool = False,
        lengths: bool = False,
        states: bool = False,
        dtype: Literal["float32", "float64"] | np.dtype[np.floating[Any]] | None = None,
    ) -> Any: ...
    def save(self, path: _Path) -> None: ...

class RNN(_Network):
    nonlinearity: Literal["tanh", "relu"]
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        nonlinearity: Literal["tanh", "relu"] = "tanh",
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        output: Literal["softmax", "linear"] = "softmax",
        dtype: npt.DTypeLike = "float32",
        seed: _Seed = None,
        batch_first: bool = False,
    ) -> None: ...

class LSTM(_Network):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        output: Literal["softmax", "linear"] = "softmax",
        dtype: npt.DTypeLike = "float32",
        seed: _Seed = None,
        batch_first: bool = False,
    ) -> None: ...

class GRU(_Network):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        output: Literal["softmax", "linear"] = "softmax",
        dtype: npt.DTypeLike = "float32",
        seed: _Seed = None,
        batch_first: bool = False,
    ) -> None: ...

def load(path: _Path, *, allow_nonfinite: bool = False) -> RNN | LSTM | GRU: ...
