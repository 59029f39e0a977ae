"""Saving and loading models: one ``.npz`` file, the configuration as JSON plus one
member per parameter array.

Formats: ``crnn/2`` (every class, layer and direction) and ``crnn.RNN/1``
(the one-layer Elman RNN of crnn 0.1's first builds), both read by
:func:`load`. A file from elsewhere is checked before anything large is
allocated: the configuration first, then each member's ``.npy`` header
(shape and dtype) against what that configuration needs; only the members a
model needs are read.
"""

import io
import json
import os
import stat
import uuid
import zipfile
from typing import Any

import numpy as np

from crnn import _checks, _signals

_FORMAT = "crnn/2"
_OLD_FORMAT = "crnn.RNN/1"
_CONFIG_LIMIT = 1 << 16     # bytes: a configuration is a few hundred
_STRING_LIMIT = 1 << 26     # bytes of an extra string member (crnn train's vocabulary)


def save(model, path, **extra):
    """Write ``model`` (and ``extra`` arrays, which load ignores) to ``path`` atomically.

    The file is written beside its destination under a temporary name,
    flushed to disk, and renamed over it; then the folder is flushed too, so
    that after a crash the path holds the old file or the new one, whole. A
    symbolic link is followed: the file it points to is replaced, the link
    stays. An existing file keeps its permissions. Ctrl-C during a save is
    held back until the save is done, so nothing is left behind.
    """
    W = model._sync()
    config = dict(model._config(), format=_FORMAT, **{"class": type(model).__name__})
    members: dict[str, Any] = {"config": np.array(json.dumps(config))}
    for name, offset, shape in model._engine.layout:
        members[name] = W[offset:offset + int(np.prod(shape))].reshape(shape)
    members.update(extra)
    write_atomic(os.fspath(path), lambda f: np.savez(f, **members))


def write_atomic(user_path, write):
    """Call ``write(f)`` on a new file beside ``user_path``, flush it to disk and rename
    it over ``user_path`` (see :func:`save`: a link is followed, a file's mode kept,
    Ctrl-C held back until done)."""
    path = os.path.realpath(user_path)
    folder, name = os.path.split(path)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"path: the folder {folder!r} of {user_path!r} does not exist")
    with _signals.Guard() as guard, guard.hold():
        _write(path, folder, name, write, user_path)


def _write(path, folder, name, write, user_path):
    mode = _mode_of(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        # os.open with 0o666 honours the umask, as open() would (mkstemp makes 0600 files).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     0o666)
    except OSError as exc:
        raise type(exc)(exc.errno, f"path: cannot write {user_path!r}: "
                                   f"{exc.strerror or exc}") from None
    try:
        try:
            f = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            raise
        with f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def _fsync_folder(folder):
    """Make the rename durable (POSIX; Windows has no directory handles to flush)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass        # some file systems cannot flush a folder; the file itself is flushed
    finally:
        os.close(fd)


def _mode_of(path):
    """The permission bits of an existing regular file at ``path`` (kept by save)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None


def load(path, classes, *, allow_nonfinite=False, extras=()):
    """The model saved at ``path`` (``classes`` maps class names to classes), and a
    dict of the ``extras`` members present (strings, as saved by save's extra)."""
    path = os.fspath(path)
    with open(path, "rb") as f:     # OSError when missing or unreadable
        if f.seekable():
            size = os.fstat(f.fileno()).st_size
            source: Any = f
        else:                       # a pipe: read once, then work from memory
            source = io.BytesIO(f.read())
            size = len(source.getbuffer())
        magic = source.read(4)
        source.seek(0)
        if magic != b"PK\x03\x04":
            raise ValueError(f"path: {path!r} is not a crnn model file (not an .npz archive)")
        try:
            with zipfile.ZipFile(source) as archive:
                model = _load(path, archive, size, classes, allow_nonfinite)
                return model, {name: _read_string(path, archive, name) for name in extras
                               if name + ".npy" in archive.namelist()}
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise ValueError(f"path: {path!r} is not a readable crnn model file ({exc})") \
                from None
        except (NotImplementedError, RuntimeError) as exc:
            # zipfile's words for a compression method it lacks, or an encrypted member
            raise ValueError(f"path: {path!r} is not a crnn model file: {exc}") from None


def is_model_file(path):
    """Whether ``path`` is a crnn model file (its configuration alone is read)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if "config.npy" not in archive.namelist() or \
                    archive.getinfo("config.npy").file_size > _CONFIG_LIMIT:
                return False
            config = _read_config(path, archive, "config.npy")
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, NotImplementedError,
            RuntimeError):
        return False
    return config.get("format") in (_FORMAT, _OLD_FORMAT)


def _bad(path, what):
    return ValueError(f"path: {path!r} {what}")


def _load(path, archive, size, classes, allow_nonfinite):
    members = {name[:-4]: name for name in archive.namelist() if name.endswith(".npy")}
    if "config" not in members:
        raise _bad(path, "is not a crnn model file (no configuration)")
    info = archive.getinfo(members["config"])
    if info.file_size > _CONFIG_LIMIT:
        raise _bad(path, f"has a configuration of {info.file_size} bytes (at most "
                         f"{_CONFIG_LIMIT}): not a crnn model file")
    config = _read_config(path, archive, members["config"])
    fmt = config.pop("format", None)
    if fmt == _OLD_FORMAT:
        cls = classes["RNN"]
    elif fmt == _FORMAT:
        cls = classes.get(config.pop("class", None))
        if cls is None:
            raise _bad(path, f"has an invalid crnn configuration (unknown class; expected "
                             f"one of {sorted(classes)})")
    else:
        raise _bad(path, f"has an invalid crnn configuration (unknown format {fmt!r})")
    layers = config.get("num_layers", 1)
    if not isinstance(layers, int) or isinstance(layers, bool) or \
            not 1 <= layers <= len(members):
        raise _bad(path, f"has an invalid crnn configuration (num_layers = {layers!r}, "
                         f"for {len(members)} members)")
    # Every value but the sizes is checked by a model of size 1 (cheap)...
    try:
        for key in ("input_size", "hidden_size", "output_size"):
            _checks.positive_int(config.get(key), key)
        probe = cls(**dict(config, hidden_size=1, input_size=1, output_size=1))
    except (ValueError, TypeError) as exc:
        raise _bad(path, f"has an invalid crnn configuration ({exc})") from None
    # ... then the shapes it implies against every member's header, and those
    # against the bytes really in the file, before the real model exists.
    shapes = _shapes(probe, config)
    for name, shape in shapes.items():
        if name not in members:
            raise _bad(path, f"is missing the parameter {name!r}")
        got_shape, got_dtype = _header(path, archive, members[name])
        if got_shape != shape or got_dtype != probe.dtype:
            raise _bad(path, f"parameter {name!r} has shape {got_shape} and dtype "
                             f"{got_dtype}, expected {shape} and {probe.dtype}")
        _check_size(path, archive, size, members[name],
                    int(np.prod(shape)) * probe.dtype.itemsize)
    model = cls(**config)
    for name in shapes:
        with archive.open(members[name]) as f:
            arr = np.lib.format.read_array(f, allow_pickle=False)
        if not allow_nonfinite and not _checks._all_finite(arr):
            raise _bad(path, f"parameter {name!r} holds NaN or infinite values (a diverged "
                             f"model?); load(..., allow_nonfinite=True) loads it anyway")
        model.params[name][...] = arr
    return model


def _read_string(path, archive, name):
    """The string stored as member ``name`` (a 0-d unicode array), or ValueError."""
    member = name + ".npy"
    if archive.getinfo(member).file_size > _STRING_LIMIT:
        raise _bad(path, f"has a member {name!r} of {archive.getinfo(member).file_size} "
                         f"bytes (at most {_STRING_LIMIT})")
    try:
        with archive.open(member) as f:
            arr = np.lib.format.read_array(f, allow_pickle=False)
    except (ValueError, SyntaxError, OSError, EOFError) as exc:
        raise _bad(path, f"has an unreadable member {name!r} ({exc})") from None
    if arr.shape != () or arr.dtype.kind != "U":
        raise _bad(path, f"has a member {name!r} that is not a string")
    return str(arr)


def _read_config(path, archive, member):
    try:
        with archive.open(member) as f:
            arr = np.lib.format.read_array(f, allow_pickle=False)
        if arr.shape != () or arr.dtype.kind != "U":
            raise ValueError("not a string")
        config = json.loads(str(arr))
    except (ValueError, RecursionError, UnicodeError) as exc:
        raise _bad(path, f"has an unreadable crnn configuration ({type(exc).__name__})") \
            from None
    if not isinstance(config, dict):
        raise _bad(path, f"has an invalid crnn configuration (a JSON {type(config).__name__}, "
                         f"not an object)")
    return config


def _shapes(probe, config):
    """Each parameter's shape for ``config``, scaled up from the size-1 ``probe``."""
    D, H, O = config["input_size"], config["hidden_size"], config["output_size"]
    G = probe._gates
    dirs = 2 if probe.bidirectional else 1
    shapes: dict[str, tuple[int, ...]] = {}
    for name, _, shape in probe._engine.layout:
        if name == "W_y":
            shapes[name] = (O, dirs * H)
        elif name == "b_y":
            shapes[name] = (O,)
        elif name.startswith("W_x"):
            shapes[name] = (G * H, dirs * H if "_l" in name else D)
        elif name.startswith("W_h"):
            shapes[name] = (G * H, H)
        else:
            shapes[name] = (G * H,)
    return shapes


def _check_size(path, archive, size, member, nbytes):
    """The member holds nbytes of data, and that much is really in the archive of
    ``size`` bytes (a header, or a zip directory, can claim any size)."""
    info = archive.getinfo(member)
    # deflate expands at most ~1032 times; np.savez stores members uncompressed
    if info.file_size < nbytes or info.compress_size * 1100 < nbytes or \
            info.header_offset + info.compress_size > size:
        raise _bad(path, f"member {member!r} is truncated or claims more data than the file "
                         f"holds")


def _header(path, archive, member):
    """(shape, dtype) of an .npy member, from its header alone."""
    try:
        with archive.open(member) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"npy version {version}")
    except (ValueError, SyntaxError, OSError, EOFError) as exc:
        raise _bad(path, f"has an unreadable member {member!r} ({exc})") from None
    return tuple(shape), dtype
