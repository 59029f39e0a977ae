"""crnn.optim: SGD, Adagrad, RMSprop, Adam and the schedules.

Every optimizer is checked against its textbook update written out in plain
numpy, against hand-computed first steps, on a small quadratic, and (when
torch is importable) against torch.optim; plus the in-place protocol, the
refusal of bad grads and hyperparameters, state_dict round trips, StepLR,
CosineLR and crnn.optim.get.
"""

import copy
import math
import re

import numpy as np
import pytest

import crnn
from crnn import optim

from conftest import rng_for

DTYPES = ["float64", "float32"]
CONTAINERS = ["dict", "list"]
SHAPES = {"W": (4, 3), "b": (3,), "u": (1, 2)}
CLASSES = {"SGD": crnn.SGD, "Adagrad": crnn.Adagrad, "RMSprop": crnn.RMSprop,
           "Adam": crnn.Adam}

# (optimizer, keyword arguments): every option of every optimizer, alone and combined.
CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True)),
    ("SGD", dict(lr=0.1, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.5, dampening=0.1, weight_decay=0.2)),
    ("SGD", dict(lr=0.05, momentum=0.7, nesterov=True, weight_decay=0.05)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.5, lr_decay=0.1)),
    ("Adagrad", dict(lr=0.2, weight_decay=0.1, eps=1e-3)),
    ("Adagrad", dict(lr=0.3, lr_decay=0.05, weight_decay=0.05, eps=1e-6)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.02, alpha=0.9, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, alpha=0.8, centered=True, momentum=0.5, weight_decay=0.1,
                     eps=1e-4)),
    ("RMSprop", dict(lr=0.01, alpha=0.0)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, betas=(0.5, 0.9))),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.1, betas=(0.0, 0.99), eps=1e-3)),
    ("Adam", dict(lr=0.05, betas=(0.8, 0.0), weight_decay=0.02)),
]


def _case_id(case):
    name, kw = case
    return name + "".join(f"-{k}={v}" for k, v in kw.items())


CASE_IDS = [_case_id(c) for c in CASES]

# The option cases × dtype × container, pairwise rather than the full product:
# each case with both dtypes and both containers, and every (dtype, container)
# pair across the cases, in half the runs.
_PAIRS = ([("float64", "dict"), ("float32", "list")], [("float64", "list"), ("float32", "dict")])
GRID = [(case, dtype, container) for i, case in enumerate(CASES)
        for dtype, container in _PAIRS[i % 2]]
GRID_IDS = [f"{_case_id(c)}-{d}-{k}" for c, d, k in GRID]


def tol(dtype):
    """(rtol, atol) for a few optimizer steps computed in ``dtype``."""
    return (1e-12, 1e-14) if np.dtype(dtype) == np.float64 else (2e-5, 2e-6)


# ---------------------------------------------------------------- helpers

def keys_of(params):
    return list(params) if isinstance(params, dict) else list(range(len(params)))


def pack(arrays, container):
    """A dict {name: array} as the given container (a dict, or a list in SHAPES order)."""
    return dict(arrays) if container == "dict" else [arrays[k] for k in SHAPES]


def make_params(rng, container, dtype):
    return pack({k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()},
                container)


def make_grads(rng, n, container, dtype, scale=1.0):
    return [pack({k: (scale * rng.standard_normal(s)).astype(dtype) for k, s in SHAPES.items()},
                 container) for _ in range(n)]


def copy_params(params):
    return {k: v.copy() for k, v in params.items()} if isinstance(params, dict) else \
        [v.copy() for v in params]


def assert_bitwise(params, before):
    for k in keys_of(before):
        assert params[k].dtype == before[k].dtype, k
        assert params[k].tobytes() == before[k].tobytes(), f"params[{k!r}] changed"


def assert_state_dicts_equal(a, b):
    """Two state dicts hold the same type, hyperparameters, step count and buffers (bitwise)."""
    assert a["optimizer"] == b["optimizer"]
    assert a["hyperparameters"] == b["hyperparameters"]
    assert a["step_count"] == b["step_count"]
    assert set(a["state"]) == set(b["state"])
    for k in a["state"]:
        assert set(a["state"][k]) == set(b["state"][k]), k
        for n in a["state"][k]:
            x, y = np.asarray(a["state"][k][n]), np.asarray(b["state"][k][n])
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), (k, n)


def names_arg(arg):
    """A regex that finds ``arg`` as a word in an error message."""
    return rf"(?<![A-Za-z0-9_]){re.escape(arg)}(?![A-Za-z0-9_])"


# ------------------------------------------- textbook updates in plain numpy (float64)

def ref_sgd(p, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    p, buf = p.astype(np.float64), None
    for g in grads:
        d = g + weight_decay * p
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        p = p - lr * d
    return p


def ref_adagrad(p, grads, lr=0.01, lr_decay=0.0, weight_decay=0.0, eps=1e-10):
    p = p.astype(np.float64)
    total = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        d = g + weight_decay * p
        total = total + d * d
        p = p - lr / (1 + (t - 1) * lr_decay) * d / (np.sqrt(total) + eps)
    return p


def ref_rmsprop(p, grads, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                centered=False):
    p = p.astype(np.float64)
    sq, avg, buf = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for g in grads:
        d = g + weight_decay * p
        sq = alpha * sq + (1 - alpha) * d * d
        if centered:
            avg = alpha * avg + (1 - alpha) * d
            s = np.sqrt(sq - avg * avg) + eps
        else:
            s = np.sqrt(sq) + eps
        if momentum > 0:
            buf = momentum * buf + d / s
            p = p - lr * buf
        else:
            p = p - lr * d / s
    return p


def ref_adam(p, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    b1, b2 = betas
    p = p.astype(np.float64)
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        d = g + weight_decay * p
        m = b1 * m + (1 - b1) * d
        v = b2 * v + (1 - b2) * d * d
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


REFERENCE = {"SGD": ref_sgd, "Adagrad": ref_adagrad, "RMSprop": ref_rmsprop, "Adam": ref_adam}


# ---------------------------------------------------------------- textbook updates

@pytest.mark.parametrize("case,dtype,container", GRID, ids=GRID_IDS)
def test_matches_textbook_update(case, dtype, container):
    """Six steps on random gradients give the textbook update written out in numpy."""
    name, kw = case
    rng = rng_for("textbook", _case_id(case), dtype, container)
    params = make_params(rng, container, dtype)
    start = copy_params(params)
    grads = make_grads(rng, 6, container, dtype)
    opt = CLASSES[name](params, **kw)
    for g in grads:
        opt.step(g)
    assert opt.step_count == 6
    rtol, atol = tol(dtype)
    for k in keys_of(params):
        want = REFERENCE[name](start[k], [g[k].astype(np.float64) for g in grads], **kw)
        assert params[k].dtype == np.dtype(dtype)
        assert not np.allclose(want, start[k], rtol=0, atol=1e-4), "the steps do not move"
        np.testing.assert_allclose(params[k], want, rtol=rtol, atol=atol, err_msg=str(k))


# ---------------------------------------------------------------- hand-computed first steps

W0 = [1.0, -1.0, 0.25, 3.0]
G0 = [3.0, -0.5, 2.0, 0.0]


def _first_step(cls, dtype, container, w, g, **kw):
    """Parameters after one step of ``cls`` from ``w`` with gradient ``g`` (one array)."""
    p = np.array(w, dtype=dtype)
    params = {"w": p} if container == "dict" else [p]
    grads = {"w": np.array(g, dtype=dtype)} if container == "dict" else [np.array(g, dtype=dtype)]
    opt = cls(params, **kw)
    opt.step(grads)
    return p, opt


def _near(dtype):
    return dict(rtol=0, atol=1e-12 if np.dtype(dtype) == np.float64 else 1e-6)


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.25)])
def test_adam_first_step_is_lr_times_sign(betas, dtype, container):
    """Adam's first step moves each weight by lr·g/(|g|+eps) ≈ lr·sign(g), not where g = 0."""
    p, opt = _first_step(crnn.Adam, dtype, container, W0, G0, lr=0.1, betas=betas)
    # lr·eps/|g| <= 2e-9: below the tolerance.
    np.testing.assert_allclose(p, [0.9, -0.9, 0.15, 3.0], rtol=0, atol=1e-8 if dtype == "float64"
                               else 1e-6)
    key = keys_of(opt.params)[0]
    np.testing.assert_allclose(opt.state[key]["exp_avg"], (1 - betas[0]) * np.array(G0),
                               rtol=1e-6)
    np.testing.assert_allclose(opt.state[key]["exp_avg_sq"], (1 - betas[1]) * np.array(G0) ** 2,
                               rtol=1e-6)


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_first_step_with_weight_decay_and_large_eps(dtype, container):
    """With weight decay d = g + wd·W, and Adam's first step is exactly lr·d/(|d|+eps)."""
    # d = [3 + 0.5, -0.5 - 0.5, 2 + 0.125, 0 + 1.5] = [3.5, -1, 2.125, 1.5]; eps = 0.5
    p, _ = _first_step(crnn.Adam, dtype, container, W0, G0, lr=0.1, weight_decay=0.5, eps=0.5)
    want = [1.0 - 0.1 * 3.5 / 4.0, -1.0 + 0.1 * 1.0 / 1.5, 0.25 - 0.1 * 2.125 / 2.625,
            3.0 - 0.1 * 1.5 / 2.0]
    np.testing.assert_allclose(p, want, **_near(dtype))


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_adagrad_first_step(dtype, container):
    """Adagrad's first step is lr·g/(|g|+eps): exact with eps = 1, ≈ lr·sign(g) by default."""
    p, opt = _first_step(crnn.Adagrad, dtype, container, W0, G0, lr=0.2, eps=1.0)
    # 0.2·[3/4, -0.5/1.5, 2/3, 0]
    np.testing.assert_allclose(p, [0.85, -1.0 + 0.2 / 3, 0.25 - 0.4 / 3, 3.0], **_near(dtype))
    np.testing.assert_allclose(opt.state[keys_of(opt.params)[0]]["sum"], [9.0, 0.25, 4.0, 0.0],
                               rtol=0, atol=0)
    p, _ = _first_step(crnn.Adagrad, dtype, container, W0, G0, lr=0.2)
    # lr·eps/|g| <= 4e-11 off lr·sign(g)
    np.testing.assert_allclose(p, [0.8, -0.8, 0.05, 3.0], rtol=0,
                               atol=1e-10 if dtype == "float64" else 1e-6)


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_adagrad_steps_shrink_with_the_sum_and_lr_decay(dtype, container):
    """With a constant gradient Adagrad's t-th step is lr/(1+(t−1)·lr_decay)/√t (eps negligible)."""
    p = np.zeros(2, dtype=dtype)
    params = {"w": p} if container == "dict" else [p]
    g = np.array([0.5, -2.0], dtype=dtype)
    opt = crnn.Adagrad(params, lr=0.3, lr_decay=0.5)
    moved = 0.0
    for t in range(1, 5):
        opt.step({"w": g} if container == "dict" else [g])
        moved += 0.3 / (1 + (t - 1) * 0.5) / math.sqrt(t)
        np.testing.assert_allclose(p, [-moved, moved], rtol=1e-6 if dtype == "float32" else 1e-9)


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_first_steps_by_hand(dtype, container):
    """SGD by hand: plain, momentum (first step = plain SGD), dampening, nesterov, weight decay."""
    w, g = [1.0, 2.0, -0.5], [0.5, -1.0, 0.0]
    p, _ = _first_step(crnn.SGD, dtype, container, w, g, lr=0.1)
    np.testing.assert_allclose(p, [0.95, 2.1, -0.5], **_near(dtype))

    p, opt = _first_step(crnn.SGD, dtype, container, w, g, lr=0.1, momentum=0.9, dampening=0.5)
    np.testing.assert_allclose(p, [0.95, 2.1, -0.5], **_near(dtype))
    opt.step({"w": np.array(g, dtype=dtype)} if container == "dict" else [np.array(g, dtype=dtype)])
    # b = 0.9·g + 0.5·g = 1.4·g
    np.testing.assert_allclose(p, [0.88, 2.24, -0.5], **_near(dtype))

    p, _ = _first_step(crnn.SGD, dtype, container, w, g, lr=0.1, momentum=0.9, nesterov=True)
    np.testing.assert_allclose(p, [0.905, 2.19, -0.5], **_near(dtype))

    # weight decay: d = g + 0.5·W = [1, 0, -0.25]
    p, _ = _first_step(crnn.SGD, dtype, container, w, g, lr=0.1, weight_decay=0.5)
    np.testing.assert_allclose(p, [0.9, 2.0, -0.475], **_near(dtype))


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", [dict(alpha=0.75), dict(alpha=0.5, centered=True),
                                dict(alpha=0.75, momentum=0.9)],
                         ids=["plain", "centered", "momentum"])
def test_rmsprop_first_step(kw, dtype, container):
    """RMSprop's first step is lr·g/(√(1−α)|g|) (centered: √(α(1−α))|g|): here 2·lr·sign(g)."""
    p, _ = _first_step(crnn.RMSprop, dtype, container, W0, G0, lr=0.01, **kw)
    np.testing.assert_allclose(p, [0.98, -0.98, 0.23, 3.0], rtol=0,
                               atol=1e-9 if dtype == "float64" else 1e-6)


# ---------------------------------------------------------------- convergence

def _quadratic(dtype):
    """A, targets with an exact solution (the minimum is 0), and the starting params."""
    rng = rng_for("quadratic")
    q1, _ = np.linalg.qr(rng.standard_normal((8, 4)))
    q2, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    A = q1 @ np.diag([2.0, 1.6, 1.3, 1.0]) @ q2          # singular values 1 .. 2
    solution = {"W": rng.standard_normal((4, 3)), "V": rng.standard_normal((4, 2))}
    targets = {k: A @ v for k, v in solution.items()}
    return A.astype(dtype), {k: t.astype(dtype) for k, t in targets.items()}


def _loss_and_grads(A, targets, params, container):
    names = list(targets)
    loss, grads = 0.0, {}
    for i, k in enumerate(names):
        r = A @ params[k if container == "dict" else i] - targets[k]
        loss += 0.5 * float(np.sum(r.astype(np.float64) ** 2))
        grads[k] = A.T @ r
    return loss, (grads if container == "dict" else [grads[k] for k in names])


CONVERGENCE = [
    ("SGD", dict(lr=0.2)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adagrad", dict(lr=0.5)),
    ("RMSprop", dict(lr=0.03)),                 # annealed: constant-lr RMSprop hovers at ~lr²
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
    ("Adam", dict(lr=0.05)),
]


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONVERGENCE, ids=[_case_id(c) for c in CONVERGENCE])
def test_converges_on_a_quadratic(case, dtype, container):
    """300 steps on ½‖AW − b‖² cut the loss by at least four orders of magnitude."""
    name, kw = case
    A, targets = _quadratic(dtype)
    params = {"W": np.zeros((4, 3), dtype=dtype), "V": np.zeros((4, 2), dtype=dtype)}
    if container == "list":
        params = list(params.values())
    opt = CLASSES[name](params, **kw)
    schedule = optim.CosineLR(opt, 300) if kw == dict(lr=0.03) else None
    first, grads = _loss_and_grads(A, targets, params, container)
    for _ in range(300):
        opt.step(grads)
        if schedule:
            schedule.step()
        loss, grads = _loss_and_grads(A, targets, params, container)
    assert loss < 1e-4 * first, (first, loss)


# ---------------------------------------------------------------- torch.optim

@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("case,dtype,container", GRID, ids=GRID_IDS)
def test_matches_torch_optim(case, dtype, container, torch):
    """Ten steps agree with torch.optim with the same options (float64 to 1e-12)."""
    name, kw = case
    rng = rng_for("torch", _case_id(case), dtype, container)
    params = make_params(rng, container, dtype)
    keys = keys_of(params)
    tparams = [torch.tensor(params[k].copy(), requires_grad=True) for k in keys]
    grads = make_grads(rng, 10, container, dtype)
    opt = CLASSES[name](params, **kw)
    topt = getattr(torch.optim, name)(tparams, foreach=False, **kw)
    for g in grads:
        opt.step(g)
        for t, k in zip(tparams, keys):
            t.grad = torch.tensor(g[k].copy())
        topt.step()
    rtol, atol = tol(dtype)
    for t, k in zip(tparams, keys):
        want = t.detach().numpy()
        assert want.dtype == params[k].dtype
        np.testing.assert_allclose(params[k], want, rtol=rtol, atol=atol, err_msg=str(k))


def test_schedules_match_torch(torch):
    """StepLR and CosineLR give torch's StepLR and CosineAnnealingLR rates (cosine up to t_max)."""
    p = torch.zeros(1, requires_grad=True)
    for make, tmake, n in [
        (lambda o: optim.StepLR(o, 3, gamma=0.3),
         lambda o: torch.optim.lr_scheduler.StepLR(o, 3, gamma=0.3), 10),
        (lambda o: optim.CosineLR(o, 7, eta_min=0.05),
         lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 7, eta_min=0.05), 7),
    ]:
        opt = crnn.SGD([np.zeros(1)], 0.7)
        topt = torch.optim.SGD([p], lr=0.7)
        sched, tsched = make(opt), tmake(topt)
        for _ in range(n):
            topt.step()
            tsched.step()
            assert sched.step() == pytest.approx(tsched.get_last_lr()[0], rel=1e-12, abs=1e-15)
            assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12, abs=1e-15)


# ---------------------------------------------------------------- in place

@pytest.mark.parametrize("case,dtype,container", GRID, ids=GRID_IDS)
def test_step_updates_in_place(case, dtype, container):
    """step updates the same arrays in place (dtype, layout kept) and leaves the grads untouched."""
    name, kw = case
    rng = rng_for("inplace", _case_id(case), dtype, container)
    params = make_params(rng, container, dtype)
    ids = {k: id(params[k]) for k in keys_of(params)}
    n = len(params)
    before = copy_params(params)
    opt = CLASSES[name](params, **kw)
    assert opt.params is params
    for g in make_grads(rng, 2, container, dtype):
        g_before = copy_params(g)
        assert opt.step(g) is None
        assert_bitwise(g, g_before)
    assert len(params) == n
    for k in keys_of(params):
        assert id(params[k]) == ids[k], f"params[{k!r}] replaced, not updated in place"
        assert params[k].dtype == np.dtype(dtype) and params[k].flags.c_contiguous
        assert not np.array_equal(params[k], before[k])


@pytest.mark.parametrize("name", list(CLASSES))
def test_steps_the_model_params_in_place(name):
    """An optimizer on an RNN's params updates the model's own arrays (its forward changes)."""
    model = crnn.RNN(3, 5, 2, seed=4)
    x = rng_for("model", name).standard_normal((4, 2, 3))
    ids = {k: id(v) for k, v in model.params.items()}
    y0, _ = model.forward(x)
    opt = CLASSES[name](model.params, lr=0.05)
    opt.step({k: np.ones_like(v) for k, v in model.params.items()})
    assert {k: id(v) for k, v in model.params.items()} == ids
    y1, _ = model.forward(x)
    assert not np.allclose(y0, y1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CLASSES))
def test_accepts_other_float_grads_as_converted(name, dtype):
    """Grads of the other float dtype, float16, non-contiguous or nested lists act as their cast."""
    rng = rng_for("convert", name, dtype)
    w = rng.standard_normal((3, 4)).astype(dtype)
    g = rng.standard_normal((3, 4))
    other = np.float32 if dtype == "float64" else np.float64
    variants = [g.astype(other), g.astype(np.float16), np.asfortranarray(g.astype(dtype)),
                np.ascontiguousarray(g.astype(dtype).T).T, g.astype(dtype).tolist()]
    for variant in variants:
        a, b = w.copy(), w.copy()
        want = np.asarray(variant).astype(dtype)
        oa, ob = CLASSES[name]([a], lr=0.1), CLASSES[name]([b], lr=0.1)
        oa.step([variant])
        ob.step([want])
        assert a.tobytes() == b.tobytes()
        assert not np.array_equal(a, w)


def test_empty_and_scalar_shaped_params():
    """Zero-size parameters are carried along untouched; 0-d parameters are updated."""
    for cls in CLASSES.values():
        empty, scalar = np.zeros((0, 3)), np.array(2.0)
        opt = cls({"e": empty, "s": scalar}, lr=0.1)
        opt.step({"e": np.zeros((0, 3)), "s": np.array(1.0)})
        opt.step({"e": np.zeros((0, 3)), "s": np.array(1.0)})
        assert empty.shape == (0, 3) and scalar.shape == () and scalar < 2.0


# ---------------------------------------------------------------- invalid grads

def _bad_grads(container, dtype):
    """(label, grads, exception) for a list of invalid grads: the bad entry comes last."""
    good = {k: np.ones(s, dtype=dtype) for k, s in SHAPES.items()}
    last = list(SHAPES)[-1]

    def with_last(value):
        g = dict(good)
        g[last] = value
        return pack(g, container)

    bad = [
        ("shape", with_last(np.ones(SHAPES[last][::-1], dtype=dtype)), ValueError),
        ("flat", with_last(np.ones(int(np.prod(SHAPES[last])), dtype=dtype)), ValueError),
        ("scalar", with_last(np.float64(1.0)), ValueError),
        ("none-entry", with_last(None), ValueError),
        ("int", with_last(np.ones(SHAPES[last], dtype=np.int64)), TypeError),
        ("bool", with_last(np.ones(SHAPES[last], dtype=bool)), TypeError),
        ("complex", with_last(np.ones(SHAPES[last], dtype=np.complex128)), TypeError),
        ("strings", with_last(np.full(SHAPES[last], "1.0")), TypeError),
        ("objects", with_last(np.full(SHAPES[last], 1.0, dtype=object)), TypeError),
        ("none", None, ValueError),
        ("array", np.ones(3), ValueError),
    ]
    if container == "dict":
        missing = dict(good)
        del missing[last]
        bad += [("missing-key", missing, ValueError),
                ("extra-key", {**good, "zz": np.ones(2, dtype=dtype)}, ValueError),
                ("renamed-key", {**missing, "U": good[last]}, ValueError),
                ("list", pack(good, "list"), ValueError)]
    else:
        g = pack(good, "list")
        bad += [("short", g[:-1], ValueError), ("long", g + [g[0]], ValueError),
                ("dict", dict(good), ValueError), ("tuple-short", tuple(g[:-1]), ValueError)]
    return bad


@pytest.mark.parametrize("case,dtype,container", GRID, ids=GRID_IDS)
def test_invalid_grads_change_nothing(case, dtype, container):
    """Bad grads raise ValueError/TypeError naming grads before any update: nothing changes."""
    name, kw = case
    rng = rng_for("badgrads", _case_id(case), dtype, container)
    params = make_params(rng, container, dtype)
    twin_params = copy_params(params)
    opt, twin = CLASSES[name](params, **kw), CLASSES[name](twin_params, **kw)
    grads = make_grads(rng, 3, container, dtype)
    for g in grads[:2]:
        opt.step(g)
        twin.step(g)
    before, saved = copy_params(params), opt.state_dict()
    for label, bad, exc in _bad_grads(container, dtype):
        with pytest.raises(exc, match=names_arg("grads")):
            opt.step(bad)
        assert_bitwise(params, before)
        assert_state_dicts_equal(opt.state_dict(), saved)
    opt.step(grads[2])
    twin.step(grads[2])
    assert_bitwise(params, twin_params)


@pytest.mark.parametrize("container", CONTAINERS)
def test_ragged_grads_raise_naming_grads(container):
    """A grad that numpy cannot turn into an array is refused with an error naming grads."""
    params = make_params(rng_for("ragged"), container, "float64")
    before = copy_params(params)
    good = {k: np.ones(s) for k, s in SHAPES.items()}
    good["b"] = [1.0, [2.0, 3.0], 4.0]
    opt = crnn.Adam(params)
    with pytest.raises((ValueError, TypeError), match=names_arg("grads")):
        opt.step(pack(good, container))
    assert_bitwise(params, before)
    assert opt.step_count == 0


# ---------------------------------------------------------------- state_dict

@pytest.mark.parametrize("case,dtype,container", GRID, ids=GRID_IDS)
def test_state_dict_round_trip_resumes_exactly(case, dtype, container):
    """An optimizer restored mid-way from another's state_dict then steps bitwise identically."""
    name, kw = case
    rng = rng_for("roundtrip", _case_id(case), dtype, container)
    params = make_params(rng, container, dtype)
    grads = make_grads(rng, 7, container, dtype)
    opt = CLASSES[name](params, **kw)
    for g in grads[:3]:
        opt.step(g)
    resumed_params = copy_params(params)
    # Same structural options (momentum on/off, centered), other values.
    other = {k: (v * 0.5 if isinstance(v, float) and v else v) for k, v in kw.items()
             if k not in ("betas",)}
    other.setdefault("lr", 0.3)
    resumed = CLASSES[name](resumed_params, **other)
    resumed.load_state_dict(opt.state_dict())
    assert resumed.step_count == 3
    assert resumed.state_dict()["hyperparameters"] == opt.state_dict()["hyperparameters"]
    for g in grads[3:]:
        opt.step(g)
        resumed.step(g)
        assert_bitwise(resumed_params, params)
    assert_state_dicts_equal(resumed.state_dict(), opt.state_dict())


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_state_dict_survives_a_deep_copy_round_trip(case, container):
    """A deep-copied state_dict (as after pickling) also restores the behaviour exactly."""
    name, kw = case
    rng = rng_for("deepcopy", _case_id(case), container)
    params = make_params(rng, container, "float64")
    grads = make_grads(rng, 4, container, "float64")
    opt = CLASSES[name](params, **kw)
    opt.step(grads[0])
    saved = copy.deepcopy(opt.state_dict())
    restart = copy_params(params)
    opt.step(grads[1])
    opt.step(grads[2])
    other = CLASSES[name](restart, **kw)
    other.load_state_dict(saved)
    other.step(grads[1])
    other.step(grads[2])
    assert_bitwise(restart, params)


@pytest.mark.parametrize("case,dtype,container", GRID, ids=GRID_IDS)
def test_state_dict_holds_copies(case, dtype, container):
    """state_dict returns copies and load_state_dict takes copies: later mutations do not leak."""
    name, kw = case
    rng = rng_for("copies", _case_id(case), dtype, container)
    params = make_params(rng, container, dtype)
    grads = make_grads(rng, 4, container, dtype)
    opt = CLASSES[name](params, **kw)
    opt.step(grads[0])
    saved = opt.state_dict()
    frozen = copy.deepcopy(saved)
    assert all(b.size for s in saved["state"].values() for b in s.values())
    opt.step(grads[1])
    opt.lr = 123.0
    assert_state_dicts_equal(saved, frozen)

    twin_params = copy_params(params)
    twin = CLASSES[name](twin_params, **kw)
    twin.load_state_dict(opt.state_dict())
    loaded = opt.state_dict()
    opt.load_state_dict(loaded)
    for s in loaded["state"].values():
        for b in s.values():
            b[...] = 7.0
    loaded["hyperparameters"]["lr"] = 9.0
    loaded["step_count"] = 99
    opt.lr = twin.lr = 0.01
    for g in grads[2:]:
        opt.step(g)
        twin.step(g)
    assert_bitwise(params, twin_params)


@pytest.mark.parametrize("source, target", [("Adam", "RMSprop"), ("SGD", "Adam"),
                                            ("Adagrad", "SGD"), ("RMSprop", "Adagrad"),
                                            ("Adam", "Adagrad")])
def test_load_state_dict_of_another_optimizer_type_raises(source, target):
    """Another optimizer type's state (or a non-dict) raises ValueError naming state_dict."""
    rng = rng_for("othertype", source, target)
    params = make_params(rng, "dict", "float64")
    grads = make_grads(rng, 2, "dict", "float64")
    src = CLASSES[source](copy_params(params), lr=0.1)
    src.step(grads[0])
    opt = CLASSES[target](params, lr=0.1)
    opt.step(grads[0])
    saved = opt.state_dict()
    for bad in [src.state_dict(), {**saved, "optimizer": "Optimizer"}]:
        with pytest.raises(ValueError, match=names_arg("state_dict")):
            opt.load_state_dict(bad)
    for bad in [None, [saved]]:
        with pytest.raises(TypeError, match=names_arg("state_dict")):
            opt.load_state_dict(bad)
        assert_state_dicts_equal(opt.state_dict(), saved)


def test_load_state_dict_is_checked_whole_before_anything_changes():
    """A partly bad state dict raises ValueError naming state_dict and changes nothing."""
    rng = rng_for("checkedwhole")
    params = make_params(rng, "dict", "float64")
    grads = make_grads(rng, 2, "dict", "float64")
    opt = crnn.Adam(params, lr=0.1)
    opt.step(grads[0])
    saved = opt.state_dict()
    other = crnn.Adam(copy_params(params), lr=0.02, betas=(0.5, 0.6))
    for _ in range(3):
        other.step(grads[1])
    good = other.state_dict()
    short = copy.deepcopy(good)
    short["state"][list(SHAPES)[-1]]["exp_avg"] = np.zeros(1)
    unknown = copy.deepcopy(good)
    unknown["state"]["nope"] = unknown["state"]["W"]
    hyper = copy.deepcopy(good)
    hyper["hyperparameters"]["momentum"] = 0.9
    for bad in (short, unknown, hyper):
        with pytest.raises(ValueError, match=names_arg("state_dict")):
            opt.load_state_dict(bad)
        assert_state_dicts_equal(opt.state_dict(), saved)


@pytest.mark.parametrize("name, built, saved_with", [
    ("SGD", dict(lr=0.1), dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9), dict(lr=0.1, weight_decay=0.1)),
    ("RMSprop", dict(), dict(centered=True)),
    ("RMSprop", dict(), dict(momentum=0.9)),
    ("Adam", dict(), dict(lr=0.01, betas=(0.5, 0.9), eps=1e-3, weight_decay=0.1)),
], ids=["sgd-momentum-into-plain", "sgd-plain-into-momentum", "rmsprop-centered-into-plain",
        "rmsprop-momentum-into-plain", "adam-other-hyperparameters"])
def test_load_state_dict_restores_the_saved_options(name, built, saved_with):
    """load_state_dict adopts the saved options (momentum, centered), as torch does."""
    rng = rng_for("options", name, _case_id((name, saved_with)))
    params = make_params(rng, "dict", "float64")
    grads = make_grads(rng, 4, "dict", "float64")
    src = CLASSES[name](params, **saved_with)
    src.step(grads[0])
    src.step(grads[1])
    dst_params = copy_params(params)
    dst = CLASSES[name](dst_params, **built)
    dst.load_state_dict(src.state_dict())
    for g in grads[2:]:
        src.step(g)
        dst.step(g)
    assert_bitwise(dst_params, params)


# ---------------------------------------------------------------- hyperparameters

ONE = [np.zeros(2)]
BAD_HYPER = [
    (crnn.SGD, dict(lr=0.0), ValueError, "lr"),
    (crnn.SGD, dict(lr=-0.1), ValueError, "lr"),
    (crnn.SGD, dict(lr=float("nan")), ValueError, "lr"),
    (crnn.SGD, dict(lr=float("inf")), ValueError, "lr"),
    (crnn.SGD, dict(lr="0.1"), TypeError, "lr"),
    (crnn.SGD, dict(lr=None), TypeError, "lr"),
    (crnn.SGD, dict(lr=True), TypeError, "lr"),
    (crnn.SGD, dict(lr=0.1, momentum=-0.5), ValueError, "momentum"),
    (crnn.SGD, dict(lr=0.1, momentum="0.9"), TypeError, "momentum"),
    (crnn.SGD, dict(lr=0.1, dampening=-0.1), ValueError, "dampening"),
    (crnn.SGD, dict(lr=0.1, weight_decay=-1e-4), ValueError, "weight_decay"),
    (crnn.SGD, dict(lr=0.1, weight_decay=[0.1]), TypeError, "weight_decay"),
    (crnn.SGD, dict(lr=0.1, nesterov=True), ValueError, "nesterov"),
    (crnn.SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError,
     "nesterov"),
    (crnn.Adagrad, dict(lr=0.0), ValueError, "lr"),
    (crnn.Adagrad, dict(lr_decay=-0.1), ValueError, "lr_decay"),
    (crnn.Adagrad, dict(weight_decay=-0.1), ValueError, "weight_decay"),
    (crnn.Adagrad, dict(eps=0.0), ValueError, "eps"),
    (crnn.Adagrad, dict(eps=-1e-10), ValueError, "eps"),
    (crnn.Adagrad, dict(eps="tiny"), TypeError, "eps"),
    (crnn.RMSprop, dict(lr=-1.0), ValueError, "lr"),
    (crnn.RMSprop, dict(alpha=1.0), ValueError, "alpha"),
    (crnn.RMSprop, dict(alpha=1.5), ValueError, "alpha"),
    (crnn.RMSprop, dict(alpha=-0.1), ValueError, "alpha"),
    (crnn.RMSprop, dict(alpha=None), TypeError, "alpha"),
    (crnn.RMSprop, dict(eps=0.0), ValueError, "eps"),
    (crnn.RMSprop, dict(momentum=-0.9), ValueError, "momentum"),
    (crnn.RMSprop, dict(weight_decay=-0.1), ValueError, "weight_decay"),
    (crnn.Adam, dict(lr=0.0), ValueError, "lr"),
    (crnn.Adam, dict(lr="fast"), TypeError, "lr"),
    (crnn.Adam, dict(betas=(1.0, 0.999)), ValueError, "betas[0]"),
    (crnn.Adam, dict(betas=(-0.1, 0.999)), ValueError, "betas[0]"),
    (crnn.Adam, dict(betas=(0.9, 1.0)), ValueError, "betas[1]"),
    (crnn.Adam, dict(betas=(0.9, 1.5)), ValueError, "betas[1]"),
    (crnn.Adam, dict(betas=(0.9, float("nan"))), ValueError, "betas[1]"),
    (crnn.Adam, dict(betas=("a", 0.9)), TypeError, "betas[0]"),
    (crnn.Adam, dict(betas=0.9), TypeError, "betas"),
    (crnn.Adam, dict(betas=(0.9, 0.99, 0.1)), TypeError, "betas"),
    (crnn.Adam, dict(eps=0.0), ValueError, "eps"),
    (crnn.Adam, dict(eps=-1e-8), ValueError, "eps"),
    (crnn.Adam, dict(weight_decay=-0.1), ValueError, "weight_decay"),
]


@pytest.mark.parametrize("cls, kw, exc, arg", BAD_HYPER,
                         ids=[f"{c.__name__}-{_case_id(('', k))[1:]}" for c, k, _, _ in BAD_HYPER])
def test_bad_hyperparameters_raise_naming_them(cls, kw, exc, arg):
    """A bad hyperparameter raises ValueError/TypeError whose message names it."""
    with pytest.raises(exc, match=names_arg(arg)):
        cls(ONE, **kw)


@pytest.mark.parametrize("cls", list(CLASSES.values()))
def test_bad_params_raise_naming_params(cls):
    """Params must be a dict or list of writeable C-contiguous float32/float64 arrays."""
    readonly = np.zeros(3)
    readonly.flags.writeable = False
    for bad in [np.zeros(3), None, ([1.0, 2.0],), [np.zeros(3, dtype=np.int64)],
                {"a": np.zeros((3, 4))[:, ::2]}, [readonly], [np.zeros(3, dtype=np.float16)]]:
        with pytest.raises(TypeError, match=names_arg("params")):
            cls(bad, lr=0.1)


def test_valid_boundary_hyperparameters_are_accepted():
    """Zero momentum/dampening/decay and betas/alpha of 0 are valid, as in torch."""
    crnn.SGD(ONE, 0.1, momentum=0, dampening=0, weight_decay=0)
    crnn.SGD(ONE, 0.1, momentum=1.5)
    crnn.Adagrad(ONE, lr_decay=0, weight_decay=0)
    crnn.RMSprop(ONE, alpha=0, momentum=0, weight_decay=0)
    opt = crnn.Adam(ONE, betas=[0, 0], weight_decay=0)
    assert opt.betas == (0.0, 0.0)


# ---------------------------------------------------------------- schedules

def test_step_lr_sequence_sets_optimizer_lr():
    """StepLR multiplies lr by gamma every step_size epochs, setting optimizer.lr each step."""
    opt = crnn.Adam(ONE, lr=0.8)
    sched = optim.StepLR(opt, step_size=3, gamma=0.5)
    assert opt.lr == 0.8
    got = []
    for _ in range(8):
        got.append(sched.step())
        assert opt.lr == got[-1]
    assert got == [0.8, 0.8, 0.4, 0.4, 0.4, 0.2, 0.2, 0.2]
    sched = optim.StepLR(crnn.SGD(ONE, 1.0), step_size=1)
    assert [sched.step() for _ in range(3)] == pytest.approx([0.1, 0.01, 0.001], rel=1e-15)


def test_cosine_lr_sequence_sets_optimizer_lr():
    """CosineLR anneals from the base lr to eta_min over t_max epochs and then stays there."""
    opt = crnn.RMSprop(ONE, lr=1.1)
    sched = optim.CosineLR(opt, t_max=4, eta_min=0.1)
    c = math.sqrt(0.5) / 2
    want = [0.6 + c, 0.6, 0.6 - c, 0.1, 0.1, 0.1]
    for w in want:
        assert sched.step() == pytest.approx(w, rel=1e-14)
        assert opt.lr == pytest.approx(w, rel=1e-14)
    sched = optim.CosineLR(crnn.SGD(ONE, 2.0), t_max=2)
    assert [sched.step() for _ in range(3)] == pytest.approx([1.0, 0.0, 0.0], abs=1e-15)


@pytest.mark.parametrize("name", list(CLASSES))
def test_schedule_changes_the_steps_taken(name):
    """After a schedule step, the optimizer's update uses the new learning rate."""
    a, b = np.zeros(3), np.zeros(3)
    g = np.array([1.0, -2.0, 0.5])
    sched_opt, fixed = CLASSES[name]([a], lr=0.4), CLASSES[name]([b], lr=0.2)
    sched = optim.StepLR(sched_opt, step_size=1, gamma=0.5)
    assert sched.step() == 0.2
    sched_opt.step([g])
    fixed.step([g])
    assert a.tobytes() == b.tobytes()


def test_bad_schedule_arguments_raise_naming_them():
    """Schedules refuse non-optimizers, step_size/t_max < 1, gamma <= 0 and eta_min < 0."""
    opt = crnn.SGD(ONE, 0.1)
    cases = [(lambda: optim.StepLR("sgd", 2), TypeError, "optimizer"),
             (lambda: optim.CosineLR(None, 2), TypeError, "optimizer"),
             (lambda: optim.StepLR(opt, 0), ValueError, "step_size"),
             (lambda: optim.StepLR(opt, 2.5), TypeError, "step_size"),
             (lambda: optim.StepLR(opt, 2, gamma=0), ValueError, "gamma"),
             (lambda: optim.CosineLR(opt, 0), ValueError, "t_max"),
             (lambda: optim.CosineLR(opt, 5, eta_min=-0.1), ValueError, "eta_min")]
    for make, exc, arg in cases:
        with pytest.raises(exc, match=names_arg(arg)):
            make()
    assert opt.lr == 0.1


# ---------------------------------------------------------------- get and exports

@pytest.mark.parametrize("container", CONTAINERS)
def test_get_by_name(container):
    """get() builds the named optimizer ("momentum": SGD with momentum) on the params with lr."""
    params = make_params(rng_for("get"), container, "float64")
    want = {"sgd": crnn.SGD, "momentum": crnn.SGD, "adagrad": crnn.Adagrad,
            "rmsprop": crnn.RMSprop, "adam": crnn.Adam}
    for name, cls in want.items():
        opt = optim.get(name, params, 0.25)
        assert type(opt) is cls
        assert opt.params is params and opt.lr == 0.25
    assert optim.get("sgd", params, 0.1).momentum == 0
    assert optim.get("momentum", params, 0.1).momentum > 0


def test_get_returns_an_instance_as_is():
    """An optimizer instance is returned unchanged (params and lr arguments ignored)."""
    opt = crnn.Adam(ONE, lr=0.003)
    assert optim.get(opt, [np.zeros(5)], 0.5) is opt
    assert opt.lr == 0.003 and opt.params is ONE


def test_get_refuses_unknown_names():
    """Unknown names and non-optimizers raise ValueError naming optimizer."""
    for bad in ["adamw", "", "sgd ", None, 3, crnn.Adam, [crnn.Adam(ONE)]]:
        with pytest.raises(ValueError, match=names_arg("optimizer")):
            optim.get(bad, ONE, 0.1)


def test_get_checks_lr():
    """get() passes lr to the constructor, which checks it."""
    with pytest.raises(ValueError, match=names_arg("lr")):
        optim.get("adam", ONE, 0)


def test_exports():
    """The optimizers are re-exported at top level and crnn.optim is the module."""
    assert crnn.optim is optim
    for name in ("SGD", "Adagrad", "RMSprop", "Adam"):
        assert getattr(crnn, name) is getattr(optim, name)
        assert issubclass(getattr(crnn, name), optim.Optimizer)
    assert set(optim.__all__) >= {"Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "StepLR",
                                  "CosineLR", "get"}
