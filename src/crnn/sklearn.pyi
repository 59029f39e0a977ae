# Types of crnn.sklearn (src/crnn/sklearn.py); the documentation is in the module.
# scikit-learn ships no types: its base classes are Any to a type checker.
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from typing_extensions import Self

from crnn.model import GRU, LSTM, RNN
from crnn.optim import Optimizer

__all__ = ["RNNClassifier", "RNNRegressor"]

_Floats = npt.NDArray[np.float64]
_RandomState = int | np.random.RandomState | None

class _RNNEstimator(BaseEstimator):
    @property
    def _expected_failed_checks(self) -> dict[str, str]: ...
    cell: str
    hidden_size: int
    num_layers: int
    bidirectional: bool
    nonlinearity: str
    dropout: float
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    clip_norm: float | None
    random_state: _RandomState
    dtype: Any
    verbose: int
    model_: RNN | LSTM | GRU
    optimizer_: Optimizer
    loss_curve_: list[float]
    n_features_in_: int
    feature_names_in_: npt.NDArray[np.object_]
    def __init__(
        self,
        *,
        cell: Literal["lstm", "gru", "rnn"] = "lstm",
        hidden_size: int = 32,
        num_layers: int = 1,
        bidirectional: bool = False,
        nonlinearity: Literal["tanh", "relu"] = "tanh",
        dropout: float = 0.0,
        epochs: int = 50,
        batch_size: int = 32,
        optimizer: Literal["adam", "sgd", "momentum", "adagrad", "rmsprop"] = "adam",
        lr: float = 0.01,
        clip_norm: float | None = 5.0,
        random_state: _RandomState = None,
        dtype: Literal["float32", "float64"] | type[np.floating[Any]] = "float32",
        verbose: Literal[0, 1, 2] = 0,
    ) -> None: ...
    def __sklearn_tags__(self) -> Any: ...
    def __sklearn_is_fitted__(self) -> bool: ...

class RNNClassifier(ClassifierMixin, _RNNEstimator):
    classes_: npt.NDArray[Any]
    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> Self: ...
    def partial_fit(
        self, X: npt.ArrayLike, y: npt.ArrayLike, classes: npt.ArrayLike | None = None
    ) -> Self: ...
    def predict(self, X: npt.ArrayLike) -> npt.NDArray[Any]: ...
    def predict_proba(self, X: npt.ArrayLike) -> _Floats: ...
    def predict_log_proba(self, X: npt.ArrayLike) -> _Floats: ...
    # Metadata routing, which scikit-learn adds from the signatures of partial_fit and score.
    def set_partial_fit_request(self, *, classes: bool | str | None = ...) -> Self: ...
    def set_score_request(self, *, sample_weight: bool | str | None = ...) -> Self: ...

class RNNRegressor(RegressorMixin, _RNNEstimator):
    n_outputs_: int
    def __sklearn_tags__(self) -> Any: ...
    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> Self: ...
    def partial_fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> Self: ...
    def predict(self, X: npt.ArrayLike) -> _Floats: ...
    def set_score_request(self, *, sample_weight: bool | str | None = ...) -> Self: ...
