# Types of crnn.clip (src/crnn/clip.py); the documentation is in the module.
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["clip_grad_norm", "clip_grad_value"]

_Floats = npt.NDArray[np.floating[Any]]
_Grads = dict[str, _Floats] | list[_Floats] | tuple[_Floats, ...] | _Floats

def clip_grad_norm(
    grads: _Grads,
    max_norm: float,
    norm_type: float | str = 2.0,
    error_if_nonfinite: bool = False,
) -> float: ...
def clip_grad_value(grads: _Grads, clip_value: float) -> None: ...
