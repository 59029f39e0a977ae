# Types of crnn.layers (src/crnn/layers.py); the documentation is in the module.
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = ["Stack"]

_Floats = npt.NDArray[np.floating[Any]]
_Seed = int | np.random.Generator | None
_State = _Floats | tuple[_Floats, _Floats]
_StateIn = npt.ArrayLike | tuple[npt.ArrayLike | None, npt.ArrayLike | None]

class Tape:
    def __del__(self) -> None: ...

class Stack:
    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    dropout: float
    dtype: np.dtype[np.floating[Any]]
    def __init__(
        self,
        cell: Literal["rnn", "lstm", "gru"],
        input_size: int,
        hidden_size: int,
        *,
        nonlinearity: Literal["tanh", "relu"] = "tanh",
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        dtype: npt.DTypeLike = "float32",
        seed: _Seed = None,
    ) -> None: ...
    @property
    def cell(self) -> Literal["rnn", "lstm", "gru"]: ...
    @property
    def params(self) -> dict[str, _Floats]: ...
    def to_torch(self) -> tuple[Any, None]: ...
    def forward(
        self,
        x: npt.ArrayLike,
        h0: _StateIn | None = None,
        lengths: npt.ArrayLike | None = None,
        *,
        training: bool = False,
        seed: _Seed = None,
    ) -> tuple[_Floats, _State, Tape]: ...
    def backward(
        self,
        tape: Tape,
        d_outputs: npt.ArrayLike | None = None,
        d_h_last: _StateIn | None = None,
        *,
        input_grad: bool = True,
    ) -> tuple[dict[str, _Floats], _Floats | None, _State]: ...
