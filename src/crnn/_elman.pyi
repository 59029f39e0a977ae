# Types of the compiled Elman kernels (src/crnn/_elman.pyx), for mypy and
# editors. Private: model.py checks and converts every argument first.
# Each function is fused over float32/float64: all floating arrays of one
# call share one dtype, and the results have it too.
from typing import Any

import numpy as np
import numpy.typing as npt

_Floats = npt.NDArray[np.floating[Any]]
_Ints = npt.NDArray[np.intp]

TANH: int
RELU: int
SOFTMAX: int
LINEAR: int

def forward(
    W_x: _Floats,
    W_h: _Floats,
    b_h: _Floats,
    W_y: _Floats,
    b_y: _Floats,
    h0: _Floats,
    X: _Floats | None,
    tokens: _Ints | None,
    batch_sizes: _Ints,
    nonlin: int,
    output: int,
) -> tuple[_Floats, _Floats]: ...
def loss_and_grad(
    W_x: _Floats,
    W_h: _Floats,
    b_h: _Floats,
    W_y: _Floats,
    b_y: _Floats,
    h0: _Floats,
    X: _Floats | None,
    tokens: _Ints | None,
    batch_sizes: _Ints,
    nonlin: int,
    output: int,
    classes: _Ints | None,
    values: _Floats | None,
    per_step: bool,
    scale: float,
    score_lo: int,
    score_hi: int,
    hidden_norms: npt.NDArray[np.float64] | None,
    want_grads: bool,
) -> tuple[float, tuple[_Floats, _Floats, _Floats, _Floats, _Floats] | None, _Floats]: ...

__test__: dict[str, str]

def _gemm_level() -> str: ...
def _set_num_threads(n: int) -> None: ...
