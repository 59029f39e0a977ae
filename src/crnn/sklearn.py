"""scikit-learn estimators: :class:`RNNClassifier` and :class:`RNNRegressor`.

A crnn network behind scikit-learn's estimator API, so that it goes into a
``Pipeline``, ``GridSearchCV``, ``cross_val_score`` and the rest::

    from crnn.sklearn import RNNClassifier
    clf = RNNClassifier(cell="lstm", hidden_size=32, random_state=0).fit(X, y)
    clf.predict(X)

Each sample is one sequence and has one label (or value): X is
(n_samples, T, D) — T steps of D features — or (n_samples, T), T steps of one
feature. The network reads the whole sequence and its head reads the final
states (both directions of the top layer when bidirectional), as crnn's
per-sequence targets.

Needs scikit-learn >= 1.6 (``pip install scikit-learn``); ``import crnn``
itself never imports it.
"""

# In Python 3 every import is absolute: ``sklearn`` below is scikit-learn, never
# this module (which is ``crnn.sklearn``) -- unless crnn's own folder is on
# sys.path (Python started inside it), where this file is found as "sklearn".
_SHADOWED = ("crnn's sklearn.py was found as scikit-learn: the folder of the crnn "
             "package is on sys.path (e.g. the current directory); start Python elsewhere")
if __name__ == "sklearn":
    raise ImportError(_SHADOWED)
try:
    import sklearn
except ImportError as exc:
    if str(exc) == _SHADOWED:
        raise
    raise ImportError("crnn.sklearn needs scikit-learn: pip install scikit-learn "
                      "(or pip install 'crnn[sklearn]')") from exc
try:
    from sklearn.utils.validation import validate_data
except ImportError as exc:      # added in scikit-learn 1.6
    raise ImportError(f"crnn.sklearn needs scikit-learn >= 1.6, found "
                      f"{sklearn.__version__}: pip install --upgrade scikit-learn") from exc

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from crnn import _checks, optim
from crnn.model import GRU, LSTM, RNN
from crnn.training import _verbosity

__all__ = ["RNNClassifier", "RNNRegressor"]

_CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
# Rows per forward call in predict: bounds the memory of the engine's buffers
# (which grow with T·rows) whatever n_samples is; results do not depend on it.
_PREDICT_ROWS = 1 << 18

_PARAMS_DOC = """
    Parameters
    ----------
    cell : {"lstm", "gru", "rnn"}, default "lstm"
        The recurrent cell: :class:`crnn.LSTM`, :class:`crnn.GRU` or
        :class:`crnn.RNN` (Elman).
    hidden_size : int, default 32
        H, the state size of each layer and direction.
    num_layers : int, default 1
    bidirectional : bool, default False
        A second direction per layer reads each sequence backwards; the head
        reads both directions' final states.
    nonlinearity : {"tanh", "relu"}, default "tanh"
        The Elman cell's f (``cell="rnn"`` only; other cells refuse "relu").
    dropout : float in [0, 1), default 0
        Dropout between layers, in training only (needs num_layers > 1).
    epochs : int, default 50
        Passes over the data in :meth:`fit` (:meth:`partial_fit` makes one).
    batch_size : int, default 32
        Sequences per optimizer step.
    optimizer : {"adam", "sgd", "momentum", "adagrad", "rmsprop"}, default "adam"
    lr : float, default 0.01
        Learning rate.
    clip_norm : float or None, default 5.0
        Clip each step's gradients to this total 2-norm; None: no clipping.
    random_state : int, numpy RandomState or None, default None
        Seeds the initial weights, the shuffling and the dropout masks: an
        int gives the same model on every fit -- bit for bit on one thread
        (``crnn.set_num_threads(1)``); on several, the work's split follows
        the machine's load, and sums may differ in their last bits.
    dtype : {"float32", "float64"}, default "float32"
        The network's arithmetic. Outputs (probabilities, values) are float64.
    verbose : {0, 1, 2}, default 0
        0 silent; 1 a progress bar and a line per epoch; 2 a line per epoch.
"""

_DATA_DOC = """
    Input layout: X is (n_samples, T, D), T steps of D features per sample,
    batch-first as scikit-learn's samples; 2-D X (n_samples, T) is T steps of
    one feature. Integer X is read as numbers (converted to ``dtype``),
    never as token ids. Sparse X is refused (TypeError), and so are NaN and
    infinity (ValueError).

    ``n_features_in_`` keeps scikit-learn's meaning for 2-D X: the number of
    columns, here T, and X given to predict must have as many columns (as
    for any scikit-learn estimator: column-wise steps such as a scaler need
    it). For 3-D X it is D, the features per step, and predict takes
    sequences of any length T. Predict needs X of the dimension fit had.
"""


_INPUT_ATTRS_DOC = """    n_features_in_ : int
        T for 2-D X, D for 3-D X (see below).
    feature_names_in_ : ndarray of str
        The columns' names, when fit was given a DataFrame with string column names.

    Notes
    -----""" + _DATA_DOC + """
    Examples
    --------
"""


class _RNNEstimator(BaseEstimator):
    """What the two estimators share: the parameters, the data, the network."""

    _output = ""    # the crnn head: "softmax" or "linear"

    @property
    def _expected_failed_checks(self):
        """{check name: reason} for scikit-learn's estimator checks that cannot pass
        (tests/test_sklearn.py passes it to parametrize_with_checks): none, but in a
        crnn built without its per-step kernel (CRNN_NO_KERNEL=1, compilers without
        vector extensions)."""
        from crnn import _engine
        if _engine.kernels() != ("blas",):
            return {}
        return {"check_methods_sample_order_invariance":
                "built without crnn's per-step kernel, the per-step products run in BLAS, "
                "whose float32 results for a sequence can differ in the last bits with its "
                "row in the batch (4.8e-7 relative seen; the check allows 1e-7)"}

    def __init__(self, *, cell="lstm", hidden_size=32, num_layers=1, bidirectional=False,
                 nonlinearity="tanh", dropout=0.0, epochs=50, batch_size=32,
                 optimizer="adam", lr=0.01, clip_norm=5.0, random_state=None,
                 dtype="float32", verbose=0):
        # scikit-learn's rule: store the parameters unchanged; fit checks them.
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.nonlinearity = nonlinearity
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.clip_norm = clip_norm
        self.random_state = random_state
        self.dtype = dtype
        self.verbose = verbose

    # -- scikit-learn's protocol -----------------------------------------------------------

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags

    def __sklearn_is_fitted__(self):
        # Not "any attribute ending in _": validate_data sets n_features_in_
        # before fit has built anything.
        return hasattr(self, "model_")

    # -- the parameters ----------------------------------------------------------------------

    def _check_params(self):
        """Check every parameter before anything is computed; return the dtype."""
        cell = _checks.choice(self.cell, "cell", tuple(_CELLS))
        _checks.choice(self.nonlinearity, "nonlinearity", ("tanh", "relu"))
        if cell != "rnn" and self.nonlinearity != "tanh":
            raise ValueError(f"nonlinearity: {self.nonlinearity!r} applies to cell='rnn' "
                             f"only; cell={cell!r} has its own gates")
        for name in ("hidden_size", "num_layers", "epochs", "batch_size"):
            _checks.positive_int(getattr(self, name), name)
        _checks.boolean(self.bidirectional, "bidirectional")
        _checks.probability(self.dropout, "dropout")
        if not isinstance(self.optimizer, str) or self.optimizer.lower() not in optim._NAMES:
            raise ValueError(f"optimizer: expected one of "
                             f"{', '.join(map(repr, optim._NAMES))}, got {self.optimizer!r}")
        _checks.positive_float(self.lr, "lr")
        _checks.positive_float(self.clip_norm, "clip_norm", allow_none=True)
        _verbosity(self.verbose)
        try:
            check_random_state(self.random_state)
        except ValueError:
            raise ValueError(f"random_state: expected None, an int or a numpy RandomState, "
                             f"got {self.random_state!r}") from None
        return _checks.float_dtype(self.dtype)

    def _seed(self):
        """The next seed for crnn (an int) from the estimator's random stream."""
        return int(self._random.randint(np.iinfo(np.int32).max))

    # -- the data ----------------------------------------------------------------------------

    def _validate(self, X, y="no_validation", *, reset, dtype, **y_params):
        """X as an (n_samples, T, D) array of ``dtype`` (and y checked by
        scikit-learn), setting or checking ``n_features_in_`` (see the class docs)."""
        ndim = None if reset else self._x_ndim
        # 3-D X: n_features_in_ is D, which scikit-learn's own check (of X.shape[1])
        # does not know; it is checked below instead.
        own_check = ndim == 3
        # y="no_validation" (scikit-learn's default): predict's X alone; fit's y=None
        # goes to validate_data, which refuses it.
        alone = isinstance(y, str) and y == "no_validation"
        out = validate_data(self, X, y, reset=reset, allow_nd=True, dtype=dtype,
                            ensure_2d=not own_check, **y_params)
        X = out if alone else out[0]
        if X.ndim not in (2, 3):
            raise ValueError(f"X: expected shape (n_samples, T, D) or (n_samples, T), "
                             f"got {X.ndim}-D X of shape {X.shape}")
        if ndim is not None and X.ndim != ndim:
            want = "(n_samples, T)" if ndim == 2 else f"(n_samples, T, {self.n_features_in_})"
            raise ValueError(f"X: expected {ndim}-D X {want}, as in fit, got shape {X.shape}")
        if X.ndim == 3:
            if X.shape[1] == 0 or X.shape[2] == 0:
                raise ValueError(f"X: expected at least one step and one feature, "
                                 f"got shape {X.shape}")
            if reset:
                self.n_features_in_ = X.shape[2]
            elif X.shape[2] != self.n_features_in_:
                raise ValueError(f"X: expected {self.n_features_in_} features per step, "
                                 f"as in fit, got shape {X.shape}")
        elif X.shape[1] == 0:
            raise ValueError(f"X: expected at least one step (column), got shape {X.shape}")
        X3 = X if X.ndim == 3 else X[:, :, None]
        return X3 if alone else (X3, out[1], X.ndim)

    # -- the network -------------------------------------------------------------------------

    def _build(self, n_in, n_out, dtype):
        """A new network and optimizer (the estimator's random stream already set)."""
        kwargs = {"num_layers": self.num_layers, "bidirectional": bool(self.bidirectional),
                  "dropout": self.dropout, "output": self._output, "dtype": dtype,
                  "seed": self._seed(), "batch_first": True}
        if self.cell == "rnn":
            kwargs["nonlinearity"] = self.nonlinearity
        model = _CELLS[self.cell](n_in, self.hidden_size, n_out, **kwargs)
        return model, optim.get(self.optimizer, model.params, self.lr)

    def _fit(self, X, y, *, first, epochs, classes=None):
        """fit (``first``: a new network) or partial_fit (continue, or start when
        there is no network yet)."""
        if first:
            # Unfitted until the new network has trained: a fit that fails never
            # leaves the previous network beside new parameters, classes or scaling.
            self.__dict__.pop("model_", None)
        dtype = self._check_params()
        if first:
            X3, y, ndim = self._validate(X, y, reset=True, dtype=dtype, **self._y_params)
            target = self._target(y, True, classes)
            self._random = check_random_state(self.random_state)
            model, opt = self._build(X3.shape[2], self._n_out, dtype)
            self._x_ndim, curve = ndim, []
        else:
            model, opt, curve = self.model_, self.optimizer_, self.loss_curve_
            X3, y, _ = self._validate(X, y, reset=False, dtype=model.dtype, **self._y_params)
            target = self._target(y, False, classes)
        # A changed lr (set_params) applies from the next step, as for an optimizer's lr.
        opt.lr = float(self.lr)
        model.history = None        # what an interrupted fit leaves is this call's alone
        try:
            history = model.fit(X3, target, epochs=epochs, batch_size=self.batch_size,
                                optimizer=opt, lr=self.lr, clip_norm=self.clip_norm,
                                shuffle=True, seed=self._seed(), verbose=self.verbose)
        except KeyboardInterrupt:
            # As crnn's fit: Ctrl-C keeps what the completed updates learned.
            self.model_, self.optimizer_ = model, opt
            self.loss_curve_ = curve + (model.history or {"loss": []})["loss"]
            raise
        # (On any other error crnn's fit has put the parameters and optimizer back.)
        self.model_, self.optimizer_ = model, opt
        self.loss_curve_ = curve + history["loss"]
        return self

    def _final_outputs(self, X):
        """The head's output z (n_samples, O), float64, before softmax: read from
        each sequence's final states, as in training."""
        check_is_fitted(self)
        model = self.model_
        X3 = self._validate(X, reset=False, dtype=model.dtype)
        W_y = model.params["W_y"].astype(np.float64)
        b_y = model.params["b_y"].astype(np.float64)
        dirs = 2 if model.bidirectional else 1
        rows = max(1, _PREDICT_ROWS // X3.shape[1])
        out = np.empty((X3.shape[0], model.output_size))
        for lo in range(0, X3.shape[0], rows):
            _, h = model.forward(X3[lo:lo + rows])
            h = h[0] if isinstance(h, tuple) else h       # the LSTM's (h, c)
            top = h if h.ndim == 2 else np.concatenate(list(h[-dirs:]), axis=1)
            out[lo:lo + rows] = top.astype(np.float64) @ W_y.T + b_y
        return out


class RNNClassifier(ClassifierMixin, _RNNEstimator):
    __doc__ = """A recurrent network that gives one class per sequence (scikit-learn API).

    A crnn LSTM, GRU or Elman RNN with a softmax head on each sequence's
    final states, trained with cross-entropy by crnn's ``fit``. Labels may be
    any values scikit-learn accepts for classes (ints, strings, ...).
    """ + _PARAMS_DOC + """
    Attributes
    ----------
    classes_ : ndarray (n_classes,)
        The class labels, sorted; column k of :meth:`predict_proba` is classes_[k].
    model_ : crnn.LSTM, crnn.GRU or crnn.RNN
        The trained network (``batch_first=True``; input_size D, 1 for 2-D X; output_size
        n_classes).
    optimizer_ : crnn.optim.Optimizer
        Its optimizer; :meth:`partial_fit` continues with its state.
    loss_curve_ : list of float
        The mean training loss of every epoch run, partial_fit's included.
""" + _INPUT_ATTRS_DOC + """    >>> import numpy as np
    >>> from crnn.sklearn import RNNClassifier
    >>> X = np.random.default_rng(0).standard_normal((200, 10, 1))  # (n_samples, T, D)
    >>> y = (X.sum(axis=(1, 2)) > 0).astype(int)                    # sign of the sum
    >>> clf = RNNClassifier(random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:3]).shape
    (3, 2)
    """

    _output = "softmax"
    _y_params: dict = {}

    def fit(self, X, y):
        """Train a new network for ``epochs`` epochs.

        Parameters
        ----------
        X : array-like (n_samples, T, D) or (n_samples, T)
        y : array-like (n_samples,)
            One label per sequence.

        Returns
        -------
        self
        """
        return self._fit(X, y, first=True, epochs=self.epochs)

    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y), continuing the network and optimizer if any.

        The first call (on an unfitted estimator) builds the network; later
        calls, and calls after :meth:`fit`, continue it with the optimizer's
        kept state. A changed ``lr`` applies; the other parameters are those
        the network was built with.

        Parameters
        ----------
        X : array-like (n_samples, T, D) or (n_samples, T)
        y : array-like (n_samples,)
        classes : array-like (n_classes,), needed on the first call
            Every label that any call may bring (as SGDClassifier's);
            afterwards optional, and then equal to ``classes_``.

        Returns
        -------
        self
        """
        first = not self.__sklearn_is_fitted__()
        if first and classes is None:
            raise ValueError("classes: expected every class label on the first call to "
                             "partial_fit (e.g. classes=np.unique(y_all)), got None")
        return self._fit(X, y, first=first, epochs=1, classes=classes)

    def _target(self, y, first, classes):
        """Class ids in [0, n_classes) for the labels y (sets classes_ when first)."""
        check_classification_targets(y)
        if first:
            encoder = LabelEncoder().fit(y if classes is None else classes)
            self.classes_ = encoder.classes_
            self._n_out = len(self.classes_)
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes: expected {self.classes_.tolist()} (as in the first "
                             f"call), got {np.unique(classes).tolist()}")
        unseen = np.setdiff1d(y, self.classes_)
        if unseen.size:
            raise ValueError(f"y: labels {unseen.tolist()} are not among classes "
                             f"{self.classes_.tolist()}")
        return np.searchsorted(self.classes_, y).astype(np.intp)

    def predict(self, X):
        """The most probable class of each sequence.

        Parameters
        ----------
        X : array-like (n_samples, T, D) or (n_samples, T)

        Returns
        -------
        y : ndarray (n_samples,) of labels from ``classes_``
        """
        z = self._final_outputs(X)     # first: NotFittedError before classes_ is read
        return self.classes_[z.argmax(axis=1)]

    def predict_proba(self, X):
        """Class probabilities: ndarray (n_samples, n_classes), float64, rows summing
        to 1, columns in the order of ``classes_``."""
        z = self._final_outputs(X)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def predict_log_proba(self, X):
        """The logarithm of :meth:`predict_proba`: ndarray (n_samples, n_classes)."""
        z = self._final_outputs(X)
        z -= z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


class RNNRegressor(RegressorMixin, _RNNEstimator):
    __doc__ = """A recurrent network that gives one value (or vector) per sequence
    (scikit-learn API).

    A crnn LSTM, GRU or Elman RNN with a linear head on each sequence's
    final states, trained with squared error by crnn's ``fit``. The targets
    are standardized for training (each output's mean and standard
    deviation, from the data of the first fit or partial_fit) and
    predictions are mapped back, so targets of any scale train alike.
    """ + _PARAMS_DOC + """
    Attributes
    ----------
    model_ : crnn.LSTM, crnn.GRU or crnn.RNN
        The trained network (``batch_first=True``; input_size D, 1 for 2-D X; output_size
        n_outputs).
    optimizer_ : crnn.optim.Optimizer
        Its optimizer; :meth:`partial_fit` continues with its state.
    loss_curve_ : list of float
        The mean training loss (of the standardized targets) of every epoch run.
    n_outputs_ : int
        Values per sequence.
""" + _INPUT_ATTRS_DOC + """    >>> import numpy as np
    >>> from crnn.sklearn import RNNRegressor
    >>> X = np.random.default_rng(0).standard_normal((200, 10))   # (n_samples, T)
    >>> y = X.mean(axis=1)
    >>> reg = RNNRegressor(random_state=0).fit(X, y)
    >>> reg.predict(X[:3]).shape
    (3,)
    """

    _output = "linear"
    _y_params = {"multi_output": True, "y_numeric": True}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X, y):
        """Train a new network for ``epochs`` epochs.

        Parameters
        ----------
        X : array-like (n_samples, T, D) or (n_samples, T)
        y : array-like (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self
        """
        return self._fit(X, y, first=True, epochs=self.epochs)

    def partial_fit(self, X, y):
        """One epoch over (X, y), continuing the network and optimizer if any.

        As the classifier's :meth:`RNNClassifier.partial_fit`; the first call
        also fixes ``n_outputs_`` and the targets' standardization.

        Parameters
        ----------
        X : array-like (n_samples, T, D) or (n_samples, T)
        y : array-like (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self
        """
        return self._fit(X, y, first=not self.__sklearn_is_fitted__(), epochs=1)

    def _target(self, y, first, classes):
        """Standardized targets (n_samples, n_outputs) (sets the scaling when first)."""
        y = np.asarray(y, dtype=np.float64)
        y2 = y.reshape(len(y), -1)
        if first:
            self._y_1d = y.ndim == 1
            self.n_outputs_ = self._n_out = y2.shape[1]
            self._y_mean = y2.mean(axis=0)
            scale = y2.std(axis=0)
            # A constant output (or a single sample) is only centred.
            self._y_scale = np.where(scale > 0, scale, 1.0)
        elif y2.shape[1] != self.n_outputs_:
            raise ValueError(f"y: expected {self.n_outputs_} output(s) per sample, as in "
                             f"the first call, got shape {y.shape}")
        return (y2 - self._y_mean) / self._y_scale

    def predict(self, X):
        """The predicted values.

        Parameters
        ----------
        X : array-like (n_samples, T, D) or (n_samples, T)

        Returns
        -------
        y : ndarray (n_samples,) or (n_samples, n_outputs), float64
            1-D when fit had 1-D y.
        """
        z = self._final_outputs(X)     # first: NotFittedError before the scaling is read
        y = z * self._y_scale + self._y_mean
        return y[:, 0] if self._y_1d else y
