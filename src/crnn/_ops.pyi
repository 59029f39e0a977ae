# Types of the compiled in-place vector kernels (src/crnn/_ops.pyx). Private.
# Every array is 1-D and C-contiguous; the floating arrays of one call share
# one dtype, float32 or float64.
from typing import Any

import numpy as np
import numpy.typing as npt

_Floats = npt.NDArray[np.floating[Any]]

def axpy(y: _Floats, alpha: float, x: _Floats) -> None: ...
def nrm2(x: _Floats) -> float: ...
def int_bounds(a: npt.NDArray[np.intp]) -> tuple[int, int]: ...
def sgd_update(
    p: _Floats,
    g: _Floats,
    buf: _Floats,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    first: bool,
) -> None: ...
def adagrad_update(
    p: _Floats, g: _Floats, sum_sq: _Floats, lr: float, eps: float, weight_decay: float
) -> None: ...
def rmsprop_update(
    p: _Floats,
    g: _Floats,
    square_avg: _Floats,
    grad_avg: _Floats,
    buf: _Floats,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
) -> None: ...
def adam_update(
    p: _Floats,
    g: _Floats,
    m: _Floats,
    v: _Floats,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    bias1: float,
    bias2: float,
) -> None: ...
def _tanhf(x: npt.NDArray[np.float32]) -> None: ...
def _expf(x: npt.NDArray[np.float32]) -> None: ...

