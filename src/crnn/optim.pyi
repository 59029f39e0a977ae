# Types of crnn.optim (src/crnn/optim.py); the documentation is in the module.
import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "StepLR", "CosineLR", "get"]

_Floats = npt.NDArray[np.floating[Any]]
_Params = dict[str, _Floats] | list[_Floats] | tuple[_Floats, ...]
_Grads = Mapping[str, npt.ArrayLike] | Sequence[npt.ArrayLike]

class Optimizer(abc.ABC):
    _buffers: ClassVar[tuple[str, ...]]
    params: _Params
    lr: float
    step_count: int
    state: dict[Any, dict[str, _Floats]]
    def __init__(self, params: _Params, lr: float) -> None: ...
    def step(self, grads: _Grads) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None: ...

class SGD(Optimizer):
    momentum: float
    dampening: float
    weight_decay: float
    nesterov: bool
    def __init__(
        self,
        params: _Params,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None: ...

class Adagrad(Optimizer):
    lr_decay: float
    weight_decay: float
    eps: float
    def __init__(
        self,
        params: _Params,
        lr: float = 0.01,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        eps: float = 1e-10,
    ) -> None: ...

class RMSprop(Optimizer):
    alpha: float
    eps: float
    weight_decay: float
    momentum: float
    centered: bool
    def __init__(
        self,
        params: _Params,
        lr: float = 0.01,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None: ...

class Adam(Optimizer):
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    def __init__(
        self,
        params: _Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None: ...

def get(optimizer: str | Optimizer, params: _Params, lr: float) -> Optimizer: ...

class _Schedule:
    optimizer: Optimizer
    base_lr: float
    epoch: int
    def __init__(self, optimizer: Optimizer) -> None: ...
    def step(self) -> float: ...

class StepLR(_Schedule):
    step_size: int
    gamma: float
    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None: ...

class CosineLR(_Schedule):
    t_max: int
    eta_min: float
    def __init__(self, optimizer: Optimizer, t_max: int, eta_min: float = 0.0) -> None: ...
