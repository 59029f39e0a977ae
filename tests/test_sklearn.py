"""crnn.sklearn: RNNClassifier and RNNRegressor against scikit-learn's estimator
checks, and what the checks do not cover: learning, labels, partial_fit, the
input layouts, reproducibility, pickling and the errors."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import crnn  # noqa: E402
from crnn.sklearn import RNNClassifier, RNNRegressor  # noqa: E402

from conftest import rng_for, subprocess_env  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    """crnn is deterministic bit for bit on one thread; on several, how the work is
    split follows the machine's load, and the gradients' sums may differ in their
    last bits. The checks compare two fits to 2 float64 eps (check_fit_idempotent)
    and the tests here compare fits bit for bit; the data are too small to gain
    from threads anyway."""
    before = crnn.get_num_threads()
    crnn.set_num_threads(1)
    yield
    crnn.set_num_threads(before)


# -- scikit-learn's estimator checks ---------------------------------------------------------

@parametrize_with_checks([RNNClassifier(), RNNRegressor()],
                         expected_failed_checks=lambda est: est._expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# -- data --------------------------------------------------------------------------------------

def sign_of_sum(n, T=10, D=1, key="sign"):
    """X (n, T, D) and y: whether the first feature sums to more than 0 over time."""
    X = rng_for(key, n, T, D).standard_normal((n, T, D))
    return X, (X[:, :, 0].sum(axis=1) > 0).astype(int)


def running_mean(n, T=10, key="mean"):
    """X (n, T) of one feature and y = 3 + 10·mean over time (a value per sequence)."""
    X = rng_for(key, n, T).standard_normal((n, T))
    return X, 3.0 + 10.0 * X.mean(axis=1)


# -- learning ----------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_classifier_learns_sign_of_sum(cell):
    X, y = sign_of_sum(1000)
    clf = RNNClassifier(cell=cell, random_state=0).fit(X[:800], y[:800])
    assert clf.score(X[800:], y[800:]) > 0.9
    assert len(clf.loss_curve_) == clf.epochs
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]


def test_regressor_learns_running_mean():
    X, y = running_mean(600)
    reg = RNNRegressor(random_state=0).fit(X[:500], y[:500])
    assert reg.score(X[500:], y[500:]) > 0.9
    pred = reg.predict(X[500:])
    assert pred.shape == (100,) and pred.dtype == np.float64


def test_regressor_targets_of_any_scale():
    """Targets are standardized for training: an offset of 1e4 and a scale of 1e3 train
    as well as unit targets."""
    X, y = running_mean(600)
    reg = RNNRegressor(random_state=0).fit(X[:500], 1e4 + 1e2 * y[:500])
    assert reg.score(X[500:], 1e4 + 1e2 * y[500:]) > 0.9


def test_regressor_multi_output_shapes():
    X, y = running_mean(200)
    Y = np.stack([y, -2 * y], axis=1)
    reg = RNNRegressor(epochs=5, random_state=0).fit(X, Y)
    assert reg.n_outputs_ == 2 and reg.predict(X).shape == (200, 2)
    reg.fit(X, y[:, None])
    assert reg.n_outputs_ == 1 and reg.predict(X).shape == (200, 1)    # (n, 1) stays 2-D
    reg.fit(X, y)
    assert reg.predict(X).shape == (200,)


# -- labels ------------------------------------------------------------------------------------

def test_string_labels():
    X, y = sign_of_sum(400)
    labels = np.array(["negative", "positive"])[y]
    clf = RNNClassifier(random_state=0).fit(X, labels)
    assert clf.classes_.tolist() == ["negative", "positive"]
    pred = clf.predict(X)
    assert set(pred) <= {"negative", "positive"}
    assert (pred == labels).mean() > 0.9
    proba = clf.predict_proba(X)
    assert proba.shape == (400, 2) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(clf.classes_[proba.argmax(axis=1)], pred)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), proba, rtol=1e-12)


def test_probabilities_read_the_states_training_scores():
    """predict_proba is the softmax the training loss scores (the final states, both
    directions when bidirectional): its mean -log p[y] is the model's own loss."""
    X, y = sign_of_sum(64, T=6, D=2)
    for bidirectional in (False, True):
        clf = RNNClassifier(bidirectional=bidirectional, num_layers=2, epochs=2,
                            dtype="float64", random_state=0).fit(X, y)
        proba = clf.predict_proba(X)
        loss = clf.model_.loss_and_grad(X, y)[0]
        np.testing.assert_allclose(-np.log(proba[np.arange(64), y]).mean(), loss, rtol=1e-10)
        if not bidirectional:       # the last step's output is the same softmax
            np.testing.assert_allclose(clf.model_.predict(X)[:, -1], proba, rtol=1e-10)


# -- partial_fit -------------------------------------------------------------------------------

def test_partial_fit_continues():
    X, y = sign_of_sum(600)
    clf = RNNClassifier(random_state=0)
    for _ in range(15):
        clf.partial_fit(X, y, classes=[0, 1])
    assert len(clf.loss_curve_) == 15 and clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.optimizer_.step_count == 15 * 19          # 600 sequences in batches of 32
    assert clf.score(X, y) > 0.85
    # It continues what was there: after fit, one more epoch changes the model but not
    # its optimizer's history, which goes on counting.
    clf.fit(X, y)
    steps, before = clf.optimizer_.step_count, clf.predict_proba(X)
    clf.partial_fit(X, y)           # classes are known now
    assert clf.optimizer_.step_count == steps + 19
    assert not np.array_equal(clf.predict_proba(X), before)


def test_partial_fit_errors():
    X, y = sign_of_sum(50)
    with pytest.raises(ValueError, match="classes"):
        RNNClassifier().partial_fit(X, y)
    clf = RNNClassifier(random_state=0).partial_fit(X, y, classes=[0, 1, 2])
    assert clf.classes_.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match=r"y: labels \[5\]"):
        clf.partial_fit(X, np.full(50, 5))
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y, classes=[0, 1])
    reg = RNNRegressor(random_state=0).partial_fit(X, y.astype(float))
    with pytest.raises(ValueError, match=r"y: expected 1 output"):
        reg.partial_fit(X, np.zeros((50, 2)))


def test_partial_fit_after_pickling_is_the_same():
    """Pickling keeps the optimizer's state: training goes on bit for bit."""
    X, y = sign_of_sum(100, D=2)
    a = RNNClassifier(random_state=0).partial_fit(X, y, classes=[0, 1])
    b = pickle.loads(pickle.dumps(a))
    a.partial_fit(X, y)
    b.partial_fit(X, y)
    assert a.predict_proba(X).tobytes() == b.predict_proba(X).tobytes()


# -- input layouts -----------------------------------------------------------------------------

def test_2d_X_is_one_feature_per_step():
    X, y = running_mean(120, T=7)
    reg = RNNRegressor(epochs=3, random_state=0).fit(X, y)
    assert reg.n_features_in_ == 7 and reg.model_.input_size == 1
    same = RNNRegressor(epochs=3, random_state=0).fit(X[:, :, None], y)
    assert same.n_features_in_ == 1
    assert reg.predict(X).tobytes() == same.predict(X[:, :, None]).tobytes()
    with pytest.raises(ValueError, match="7 features"):
        reg.predict(X[:, :5])       # scikit-learn's rule for 2-D X: the same columns
    with pytest.raises(ValueError, match="2-D X"):
        reg.predict(X[:, :, None])


def test_3d_X_takes_any_length():
    X, y = sign_of_sum(120, T=8, D=3)
    clf = RNNClassifier(epochs=3, random_state=0).fit(X, y)
    assert clf.n_features_in_ == 3 and clf.model_.input_size == 3
    assert clf.predict(X[:, :3]).shape == (120,)
    assert clf.predict_proba(np.zeros((5, 20, 3))).shape == (5, 2)
    with pytest.raises(ValueError, match="3 features per step"):
        clf.predict(X[:, :, :2])
    with pytest.raises(ValueError, match="3-D X"):
        clf.predict(X[:, :, 0])
    with pytest.raises(ValueError, match="4-D X"):
        RNNClassifier().fit(X[..., None], y)


def test_integer_X_is_numbers_not_tokens():
    X = rng_for("int").integers(-3, 4, size=(100, 6))
    y = (X.sum(axis=1) > 0).astype(int)
    clf = RNNClassifier(epochs=3, random_state=0).fit(X, y)
    assert clf.model_.input_size == 1
    assert clf.predict_proba(X).tobytes() == clf.predict_proba(X.astype(float)).tobytes()


def test_refuses_sparse_and_nonfinite():
    sparse = pytest.importorskip("scipy.sparse")
    X, y = sign_of_sum(40, D=1)
    with pytest.raises(TypeError, match="[Ss]parse"):
        RNNClassifier().fit(sparse.csr_matrix(X[:, :, 0]), y)
    bad = X.copy()
    bad[3, 2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        RNNClassifier().fit(bad, y)
    clf = RNNClassifier(epochs=1).fit(X, y)
    bad[3, 2, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        clf.predict(bad)


# -- reproducibility and pickling --------------------------------------------------------------

@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_random_state_reproducible(cell):
    X, y = sign_of_sum(100, D=2)
    params = {"cell": cell, "epochs": 3, "num_layers": 2, "dropout": 0.3}
    a = RNNClassifier(random_state=7, **params).fit(X, y)
    b = RNNClassifier(random_state=7, **params).fit(X, y)
    assert a.predict_proba(X).tobytes() == b.predict_proba(X).tobytes()
    a.fit(X, y)         # an int gives the same model on every fit
    assert a.predict_proba(X).tobytes() == b.predict_proba(X).tobytes()
    c = RNNClassifier(random_state=8, **params).fit(X, y)
    assert c.predict_proba(X).tobytes() != a.predict_proba(X).tobytes()
    d = RNNClassifier(random_state=np.random.RandomState(7), **params).fit(X, y)
    e = RNNClassifier(random_state=np.random.RandomState(7), **params).fit(X, y)
    assert d.predict_proba(X).tobytes() == e.predict_proba(X).tobytes()


@pytest.mark.parametrize("cell, bidirectional", [("rnn", True), ("lstm", False),
                                                 ("gru", True)])
def test_pickle_and_clone(cell, bidirectional):
    X, y = running_mean(80)
    reg = RNNRegressor(cell=cell, bidirectional=bidirectional, num_layers=2, epochs=2,
                       dtype="float64", random_state=0).fit(X, y)
    back = pickle.loads(pickle.dumps(reg))
    assert back.predict(X).tobytes() == reg.predict(X).tobytes()
    assert type(back.model_) is type(reg.model_) and back.model_.bidirectional == bidirectional
    assert back.optimizer_.state_dict()["step_count"] == reg.optimizer_.step_count
    # Training goes on in the copy: its optimizer holds the copy's own parameters.
    assert back.optimizer_.params is back.model_.params
    before = reg.predict(X)
    back.partial_fit(X, y)
    assert back.optimizer_.step_count > reg.optimizer_.step_count
    assert not np.array_equal(back.predict(X), before)
    assert reg.predict(X).tobytes() == before.tobytes()
    fresh = clone(reg)
    assert fresh.get_params() == reg.get_params()
    with pytest.raises(NotFittedError):
        fresh.predict(X)


def test_pandas_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = running_mean(60, T=4)
    frame = pd.DataFrame(X, columns=["t0", "t1", "t2", "t3"])
    reg = RNNRegressor(epochs=2, random_state=0).fit(frame, y)
    assert reg.feature_names_in_.tolist() == ["t0", "t1", "t2", "t3"]
    with pytest.warns(UserWarning, match="feature names"):   # scikit-learn's own warning
        plain = reg.predict(X)
    assert reg.predict(frame).tobytes() == plain.tobytes()


# -- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("param, value, error", [
    ("cell", "transformer", ValueError),
    ("hidden_size", 0, ValueError),
    ("hidden_size", 2.5, TypeError),
    ("num_layers", -1, ValueError),
    ("bidirectional", "yes", TypeError),
    ("nonlinearity", "sigmoid", ValueError),
    ("dropout", 1.0, ValueError),
    ("epochs", 0, ValueError),
    ("batch_size", None, TypeError),
    ("optimizer", "lbfgs", ValueError),
    ("lr", -0.1, ValueError),
    ("clip_norm", 0, ValueError),
    ("random_state", "seed", ValueError),
    ("dtype", "float16", ValueError),
    ("verbose", 3, ValueError),
])
@pytest.mark.parametrize("estimator", [RNNClassifier, RNNRegressor])
def test_bad_parameter_named_at_fit(estimator, param, value, error):
    X, y = sign_of_sum(20)
    est = estimator().set_params(**{param: value})       # accepted as given, as scikit-learn's
    assert est.get_params()[param] is value
    with pytest.raises(error, match=rf"^{param}: "):
        est.fit(X, y)
    assert not est.__sklearn_is_fitted__()
    with pytest.raises(NotFittedError):
        est.predict(X)


def test_failed_fit_leaves_the_estimator_unfitted():
    X, y = sign_of_sum(40)
    clf = RNNClassifier(epochs=1).fit(X, y)
    bad = X.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(bad, y)
    with pytest.raises(NotFittedError):     # never the old network beside new data
        clf.predict(X)


def test_ctrl_c_keeps_the_network(monkeypatch):
    """As crnn's fit: an interrupted fit keeps what the completed epochs learned."""
    from crnn.model import _Network
    original = _Network.fit

    def interrupted(model, *args, **kwargs):
        original(model, *args, **{**kwargs, "epochs": 2})
        raise KeyboardInterrupt

    monkeypatch.setattr(_Network, "fit", interrupted)
    X, y = sign_of_sum(40)
    clf = RNNClassifier(epochs=50)
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X, y)
    assert len(clf.loss_curve_) == 2
    assert clf.predict(X).shape == (40,)


def test_relu_needs_the_elman_cell():
    X, y = sign_of_sum(40)
    with pytest.raises(ValueError, match="^nonlinearity: 'relu' applies to cell='rnn'"):
        RNNClassifier(cell="gru", nonlinearity="relu").fit(X, y)
    clf = RNNClassifier(cell="rnn", nonlinearity="relu", epochs=2, random_state=0).fit(X, y)
    assert clf.model_.nonlinearity == "relu"


# -- imports -----------------------------------------------------------------------------------

def _python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=subprocess_env(), timeout=120)


def test_import_crnn_does_not_import_sklearn():
    run = _python("import sys, crnn, crnn.optim, crnn.layers\n"
                  "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_started_inside_the_package_folder():
    """There `import sklearn` finds crnn's own sklearn.py: the error says so."""
    run = subprocess.run([sys.executable, "-c", "import crnn.sklearn"], capture_output=True,
                         text=True, env=subprocess_env(), timeout=120,
                         cwd=os.path.dirname(os.path.abspath(crnn.__file__)))
    assert run.returncode != 0
    assert "ImportError: crnn's sklearn.py was found as scikit-learn" in run.stderr


def test_without_sklearn_the_error_says_what_to_install():
    # A None entry in sys.modules makes `import sklearn` raise ImportError.
    run = _python("import sys\nsys.modules['sklearn'] = None\nimport crnn.sklearn")
    assert run.returncode != 0
    assert "ImportError: crnn.sklearn needs scikit-learn: pip install scikit-learn" in run.stderr
