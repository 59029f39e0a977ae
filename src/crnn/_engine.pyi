# Types of the compiled engine (src/crnn/_engine.pyx). Private: model.py and
# layers.py check and convert every argument; arrays are C-contiguous, of the
# engine's dtype (intp for ids, lengths and row maps), or None.
from typing import Any

from typing_extensions import disjoint_base

CELLS: dict[str, int]
SOFTMAX: int
LINEAR: int

@disjoint_base
class Workspace:
    keep: Any
    T: int
    B: int
    flags: int
    @property
    def nbytes(self) -> int: ...

@disjoint_base
class Engine:
    layout: list[tuple[str, int, tuple[int, ...]]]
    size: int
    def __init__(
        self,
        cell: str,
        num_layers: int,
        bidirectional: bool,
        input_size: int,
        hidden_size: int,
        output_size: int,
        is_double: bool,
    ) -> None: ...
    def forward(
        self, W: Any, X: Any, tokens: Any, B: int, bs: Any, rev: Any, h0: Any, c0: Any,
        output: int, y: Any, h_last: Any, c_last: Any,
    ) -> None: ...
    def loss(
        self, W: Any, dW: Any, X: Any, tokens: Any, B: int, bs: Any, rev: Any, h0: Any,
        c0: Any, masks: Any, output: int, per_step: bool, classes: Any, values: Any,
        scale: float, lo: int, hi: int, h_last: Any, c_last: Any, norms: Any,
    ) -> float: ...
    def stack_forward(
        self, W: Any, X: Any, tokens: Any, B: int, bs: Any, rev: Any, h0: Any, c0: Any,
        masks: Any, out: Any, h_last: Any, c_last: Any,
    ) -> Workspace: ...
    def stack_backward(
        self, tape: Workspace, W: Any, dW: Any, dOut: Any, dHn: Any, dCn: Any, dX: Any,
        dh0: Any, dc0: Any,
    ) -> None: ...

def set_num_threads(n: int) -> None: ...
def max_threads() -> int: ...
def set_blas_control(get: int, set: int) -> None: ...
def blas_threads() -> int: ...
def kernel() -> str: ...
def kernels() -> tuple[str, ...]: ...
def set_kernel(name: str) -> None: ...
def cell_level() -> str: ...
def cell_levels() -> tuple[str, ...]: ...
def set_cell_level(name: str) -> None: ...
def counters() -> dict[str, int]: ...
def calm() -> None: ...
