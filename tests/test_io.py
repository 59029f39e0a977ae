"""RNN.save / crnn.load: exact round trips, and clean OSError/ValueError for missing or corrupt files."""

import os
import zipfile

import numpy as np
import pytest

import crnn

from conftest import PARAM_NAMES, make_case, make_model, rng_for

DTYPES = ["float64", "float32"]
LOAD_ERRORS = (OSError, ValueError)


def _saved(tmp_path, dtype="float32", nonlinearity="relu", output="linear"):
    rng = rng_for("io", dtype, nonlinearity, output)
    model = make_model(5, 7, 3, nonlinearity=nonlinearity, output=output, dtype=dtype,
                       rng=rng)
    path = tmp_path / "model.npz"
    model.save(path)
    return model, path


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nonlinearity,output", [("tanh", "softmax"), ("relu", "linear"),
                                                 ("relu", "softmax"), ("tanh", "linear")])
@pytest.mark.parametrize("as_str", [False, True], ids=["Path", "str"])
def test_round_trip_is_exact(as_str, nonlinearity, output, dtype, tmp_path):
    """load(save(m)) has the same config, bitwise the same params, and bitwise the same outputs."""
    rng = rng_for("io-rt", nonlinearity, output, dtype)
    T, B, D, H, O = 6, 4, 5, 7, 3
    model = make_model(D, H, O, nonlinearity=nonlinearity, output=output, dtype=dtype, rng=rng)
    path = tmp_path / "m.npz"
    model.save(str(path) if as_str else path)
    assert path.exists()
    loaded = crnn.load(str(path) if as_str else path)
    assert isinstance(loaded, crnn.RNN)
    for attr in ("input_size", "hidden_size", "output_size", "nonlinearity", "output"):
        assert getattr(loaded, attr) == getattr(model, attr), attr
    assert loaded.dtype == model.dtype == np.dtype(dtype)
    assert set(loaded.params) == set(PARAM_NAMES)
    for k in PARAM_NAMES:
        assert loaded.params[k].dtype == np.dtype(dtype)
        assert loaded.params[k].flags.c_contiguous
        assert loaded.params[k].tobytes() == model.params[k].tobytes(), k
    case = make_case(rng, T, B, D, H, O, output=output, lengths=True, h0=True, dtype=dtype)
    kw = dict(h0=case["h0"], lengths=case["lengths"])
    for a, b in zip(model.forward(case["x"], **kw), loaded.forward(case["x"], **kw)):
        np.testing.assert_array_equal(a, b)
    la, ga, _ = model.loss_and_grad(case["x"], case["target"], **kw)
    lb, gb, _ = loaded.loss_and_grad(case["x"], case["target"], **kw)
    assert la == lb
    for k in PARAM_NAMES:
        np.testing.assert_array_equal(ga[k], gb[k])


@pytest.mark.parametrize("name", ["model", "model.bin", "model.npz"])
def test_round_trip_any_file_name(name, tmp_path):
    """save(path) writes exactly ``path`` (no extension appended) and load(path) reads it back."""
    model = make_model(3, 4, 2, dtype="float64", rng=rng_for("names", name))
    model.save(tmp_path / name)
    assert os.listdir(tmp_path) == [name]
    loaded = crnn.load(tmp_path / name)
    for k in PARAM_NAMES:
        np.testing.assert_array_equal(loaded.params[k], model.params[k])


def test_loaded_model_is_independent(tmp_path):
    """The loaded params are the loaded model's own writeable arrays, not shared with the original."""
    model, path = _saved(tmp_path, "float64")
    loaded = crnn.load(path)
    for k in PARAM_NAMES:
        assert loaded.params[k].flags.writeable
        loaded.params[k] += 1.0
        assert not np.array_equal(loaded.params[k], model.params[k])
    # and a changed loaded model still works
    x = rng_for("indep").standard_normal((3, 2, 5))
    y, _ = loaded.forward(x)
    assert np.all(np.isfinite(y))


def test_save_overwrites_existing_file(tmp_path):
    """Saving a second model to the same path replaces the first."""
    a, path = _saved(tmp_path, "float64")
    b = crnn.RNN(2, 3, 4, dtype="float32", seed=9)
    b.save(path)
    c = crnn.load(path)
    assert (c.input_size, c.hidden_size, c.output_size, c.dtype) == (2, 3, 4, np.float32)
    for k in PARAM_NAMES:
        np.testing.assert_array_equal(c.params[k], b.params[k])


def test_load_missing_file_is_oserror(tmp_path):
    """A path that does not exist raises OSError."""
    with pytest.raises(OSError):
        crnn.load(tmp_path / "does-not-exist.npz")


def test_load_directory_is_oserror_or_valueerror(tmp_path):
    """A directory instead of a file raises OSError/ValueError."""
    with pytest.raises(LOAD_ERRORS):
        crnn.load(tmp_path)


@pytest.mark.parametrize("nbytes", [0, 1, 64, 4096])
def test_load_random_bytes(nbytes, tmp_path):
    """A file of random bytes (or empty) raises OSError/ValueError, nothing else."""
    path = tmp_path / "junk.npz"
    path.write_bytes(rng_for("junk", nbytes).integers(0, 256, nbytes, dtype=np.uint8).tobytes())
    with pytest.raises(LOAD_ERRORS):
        crnn.load(path)


def test_load_pickle_bytes_is_refused(tmp_path):
    """A pickle is not a model file: OSError/ValueError, and nothing is unpickled."""
    import pickle
    path = tmp_path / "p.npz"
    path.write_bytes(pickle.dumps({"W_x": np.zeros(3)}))
    with pytest.raises(LOAD_ERRORS):
        crnn.load(path)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.99])
def test_load_truncated_npz(fraction, tmp_path):
    """A saved file cut short raises OSError/ValueError."""
    _, path = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(LOAD_ERRORS):
        crnn.load(path)


def test_load_npy_instead_of_npz(tmp_path):
    """A plain .npy array file raises OSError/ValueError."""
    path = tmp_path / "a.npy"
    np.save(path, np.zeros((3, 3)))
    with pytest.raises(LOAD_ERRORS):
        crnn.load(path)


def test_load_foreign_npz(tmp_path):
    """An unrelated .npz (no crnn keys) raises OSError/ValueError."""
    path = tmp_path / "other.npz"
    np.savez(path, a=np.zeros(3), b=np.ones((2, 2)))
    with pytest.raises(LOAD_ERRORS):
        crnn.load(path)


def _contents(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _key_of(contents, array):
    """The key under which ``array`` was saved."""
    keys = [k for k, v in contents.items()
            if v.shape == array.shape and v.dtype == array.dtype and np.array_equal(v, array)]
    assert len(keys) == 1, keys
    return keys[0]


@pytest.mark.parametrize("name", PARAM_NAMES)
def test_load_npz_missing_a_weight(name, tmp_path):
    """Removing any one weight from a saved file raises OSError/ValueError."""
    model, path = _saved(tmp_path)
    contents = _contents(path)
    del contents[_key_of(contents, model.params[name])]
    np.savez(path, **contents)
    with pytest.raises(LOAD_ERRORS):
        crnn.load(path)


def test_load_npz_missing_any_key_never_misbehaves(tmp_path):
    """Removing any stored key either raises OSError/ValueError or still loads the same model."""
    model, path = _saved(tmp_path, "float64", "relu", "softmax")
    full = _contents(path)
    x = rng_for("missing-any").standard_normal((4, 2, 5))
    y_ref, _ = model.forward(x)
    for key in full:
        contents = dict(full)
        del contents[key]
        p = tmp_path / f"without-{key}.npz"
        np.savez(p, **contents)
        try:
            loaded = crnn.load(p)
        except LOAD_ERRORS:
            continue
        assert (loaded.nonlinearity, loaded.output, loaded.dtype) == ("relu", "softmax",
                                                                      np.float64), key
        np.testing.assert_array_equal(loaded.forward(x)[0], y_ref, err_msg=key)


@pytest.mark.parametrize("name", ["W_x", "W_h", "b_h", "W_y", "b_y"])
def test_load_npz_with_inconsistent_shapes(name, tmp_path):
    """A weight whose shape disagrees with the others raises ValueError/OSError, not a crash later."""
    model, path = _saved(tmp_path)
    contents = _contents(path)
    key = _key_of(contents, model.params[name])
    bad = contents[key]
    contents[key] = np.zeros(tuple(s + 1 for s in bad.shape), dtype=bad.dtype)
    np.savez(path, **contents)
    with pytest.raises(LOAD_ERRORS):
        crnn.load(path)


def test_load_npz_with_non_numeric_weight(tmp_path):
    """A weight stored as strings raises ValueError/OSError."""
    model, path = _saved(tmp_path)
    contents = _contents(path)
    key = _key_of(contents, model.params["b_h"])
    contents[key] = np.array(["a"] * model.params["b_h"].size)
    np.savez(path, **contents)
    with pytest.raises(LOAD_ERRORS):
        crnn.load(path)


def test_load_zip_with_garbage_member(tmp_path):
    """A zip whose member is not an array raises OSError/ValueError."""
    model, path = _saved(tmp_path)
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    out = tmp_path / "garbage.npz"
    with zipfile.ZipFile(out, "w") as z:
        for n in names:
            z.writestr(n, b"not an array")
    with pytest.raises(LOAD_ERRORS):
        crnn.load(out)


def test_save_does_not_change_the_model(tmp_path):
    """save leaves params bitwise untouched (and the same objects)."""
    model = make_model(3, 4, 2, dtype="float64", rng=rng_for("save-same"))
    before = {k: (id(v), v.tobytes()) for k, v in model.params.items()}
    model.save(tmp_path / "x.npz")
    assert {k: (id(v), v.tobytes()) for k, v in model.params.items()} == before


def test_save_into_missing_directory_is_oserror(tmp_path):
    """Saving under a directory that does not exist raises OSError and creates nothing."""
    model = crnn.RNN(2, 2, 2, seed=0)
    with pytest.raises(OSError):
        model.save(tmp_path / "no" / "such" / "dir" / "m.npz")
    assert os.listdir(tmp_path) == []
