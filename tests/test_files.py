"""Files: saving never loses or leaves anything, and a file from elsewhere cannot
crash, exhaust memory or slip garbage into a model.

Every bad file must give ValueError naming the file; its configuration and
the shapes and dtypes of its arrays are checked before anything large is
allocated, and only the members the model needs are read.
"""

import io
import json
import os
import signal
import stat
import sys
import threading
import zipfile

import numpy as np
import pytest

import crnn
from crnn import _io
from conftest import peak_bytes


def _model_file(tmp_path, name="m.npz", **kwargs):
    model = crnn.LSTM(3, 5, 2, seed=0, **kwargs)
    path = tmp_path / name
    model.save(path)
    return model, path


def _members(path):
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _write_zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        for name, data in members.items():
            z.writestr(name, data)


def _npy(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _refused(path, *words):
    with pytest.raises(ValueError) as info:
        crnn.load(path)
    message = str(info.value)
    assert os.fspath(path) in message or repr(os.fspath(path)) in message, message
    for word in words:
        assert word in message, message
    return message


# -- 6. crafted files --------------------------------------------------------------------

@pytest.mark.parametrize("config", [[1, 2], "a string", 3, None, True])
def test_a_configuration_that_is_not_an_object(tmp_path, config):
    path = tmp_path / "c.npz"
    _write_zip(path, {"config.npy": _npy(np.array(json.dumps(config)))})
    _refused(path, "configuration")


def test_a_configuration_member_of_raw_bytes(tmp_path):
    path = tmp_path / "c.npz"
    _write_zip(path, {"config.npy": b"hello, not an array"})
    _refused(path, "configuration")


def test_a_deeply_nested_configuration(tmp_path):
    path = tmp_path / "c.npz"
    _write_zip(path, {"config.npy": _npy(np.array("[" * 30_000 + "]" * 30_000))})
    _refused(path, "configuration")


def test_a_huge_declared_model_is_refused_before_it_is_built(tmp_path):
    """2 kB declaring hidden_size = 40000 (a 12 GiB LSTM): refused, nothing large allocated."""
    _, small = _model_file(tmp_path)
    members = _members(small)
    config = json.loads(str(np.load(io.BytesIO(members["config.npy"]))))
    config["hidden_size"] = 40_000
    members["config.npy"] = _npy(np.array(json.dumps(config)))
    path = tmp_path / "huge.npz"
    _write_zip(path, members)
    assert os.path.getsize(path) < 4096
    peak = peak_bytes(_refused, path, "shape")
    assert peak < 16 << 20, peak


def test_an_ignored_member_is_never_read(tmp_path):
    """A small file with a 256 MiB member (deflated) that the model does not use."""
    _, path = _model_file(tmp_path)
    members = _members(path)
    members["junk.npy"] = _npy(np.zeros(1 << 25))     # 256 MiB of zeros, ~250 kB deflated
    big = tmp_path / "junk.npz"
    _write_zip(big, members, zipfile.ZIP_DEFLATED)
    assert os.path.getsize(big) < 2 << 20
    peak = peak_bytes(crnn.load, big)
    assert peak < 16 << 20, peak


def test_a_member_claiming_more_data_than_the_file_holds(tmp_path):
    model, path = _model_file(tmp_path)
    members = _members(path)
    header = _npy(np.zeros((20, 3), np.float32))[:128]      # the header alone, no data
    members["W_x.npy"] = header
    bad = tmp_path / "short.npz"
    _write_zip(bad, members)
    _refused(bad)


@pytest.mark.parametrize("how", ["unknown-method", "encrypted"])
def test_members_zipfile_cannot_read(tmp_path, how):
    _, path = _model_file(tmp_path)
    data = bytearray(path.read_bytes())
    # Patch every local and central header: the compression method (a value no zip
    # reader knows), or the "encrypted" flag bit.
    for sig, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        start = 0
        while (i := data.find(sig, start)) >= 0:
            if how == "unknown-method":
                data[i + method_at:i + method_at + 2] = (99).to_bytes(2, "little")
            else:
                data[i + flag_at] |= 1
            start = i + 4
    bad = tmp_path / "odd.npz"
    bad.write_bytes(bytes(data))
    _refused(bad)


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                                         zipfile.ZIP_LZMA])
def test_members_compressed_by_other_tools_load(tmp_path, compression):
    model, path = _model_file(tmp_path)
    other = tmp_path / "other.npz"
    _write_zip(other, _members(path), compression)
    loaded = crnn.load(other)
    for k in model.params:
        assert np.array_equal(loaded.params[k], model.params[k])


@pytest.mark.skipif(not os.path.exists("/dev/fd"), reason="needs /dev/fd")
def test_load_from_a_pipe(tmp_path):
    model, path = _model_file(tmp_path)
    data = path.read_bytes()
    r, w = os.pipe()

    def feed():
        with os.fdopen(w, "wb") as f:
            f.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        loaded = crnn.load(f"/dev/fd/{r}")
    finally:
        writer.join()
        os.close(r)
    for k in model.params:
        assert np.array_equal(loaded.params[k], model.params[k])


# -- 8. non-finite weights ------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused_unless_allowed(tmp_path, bad):
    model = crnn.GRU(3, 4, 3, seed=0)
    model.params["W_h"][1, 2] = bad
    path = tmp_path / "nan.npz"
    model.save(path)
    _refused(path, "W_h", "allow_nonfinite")
    loaded = crnn.load(path, allow_nonfinite=True)
    np.testing.assert_array_equal(loaded.params["W_h"], model.params["W_h"])
    with pytest.raises(TypeError, match="allow_nonfinite"):
        crnn.load(path, allow_nonfinite="yes")


# -- 5. save -------------------------------------------------------------------------------

@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_save_keeps_an_existing_files_mode(tmp_path):
    model, path = _model_file(tmp_path)
    os.chmod(path, 0o640)
    model.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


@pytest.mark.skipif(os.name == "nt", reason="symbolic links")
def test_save_through_a_symlink_replaces_the_target_and_keeps_the_link(tmp_path):
    model, target = _model_file(tmp_path, "target.npz")
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    other = crnn.LSTM(3, 5, 2, seed=1)
    other.save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    np.testing.assert_array_equal(crnn.load(target).params["W_h"], other.params["W_h"])
    assert sorted(os.listdir(tmp_path)) == ["link.npz", "target.npz"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX folders")
def test_save_flushes_the_file_and_its_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def recording(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        return real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    crnn.RNN(2, 3, 2).save(tmp_path / "m.npz")
    assert synced == [False, True]


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_ctrl_c_at_any_point_of_a_save_leaves_nothing_behind(tmp_path):
    """A SIGINT at each line of save in turn: no temporary file, no descriptor left
    open, and the path holds the old model or the new one, whole."""
    old, path = _model_file(tmp_path)
    new = crnn.LSTM(3, 5, 2, seed=1)
    code = {_io.save.__code__, _io.write_atomic.__code__, _io._write.__code__,
            _io._fsync_folder.__code__}
    fds = _open_fds()
    k = 0
    while True:
        k += 1
        lines = [0]

        def tracer(frame, event, arg):
            if frame.f_code not in code:
                return None

            def local(frame, event, arg):
                if event == "line":
                    lines[0] += 1
                    if lines[0] == k:
                        os.kill(os.getpid(), signal.SIGINT)
                return local
            return local

        sys.settrace(tracer)
        interrupted = False
        try:
            new.save(path)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            sys.settrace(None)
        assert sorted(os.listdir(tmp_path)) == ["m.npz"], k
        assert _open_fds() == fds, k
        loaded = crnn.load(path)
        assert any(np.array_equal(loaded.params["W_h"], m.params["W_h"]) for m in (old, new))
        if lines[0] < k:        # the signal came after the last line: every point is done
            assert not interrupted
            break
        assert interrupted, k
        old.save(path)
    assert k > 10


def test_save_to_an_unwritable_place_names_the_path(tmp_path):
    with pytest.raises(OSError, match="m.npz"):
        crnn.RNN(2, 3, 2).save(tmp_path / "missing" / "m.npz")
    if os.path.isdir("/proc"):
        with pytest.raises(OSError, match="/proc/m.npz"):
            crnn.RNN(2, 3, 2).save("/proc/m.npz")
