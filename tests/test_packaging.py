"""The installed package: its version, its files, and where it was imported from.

With CRNN_TEST_INSTALLED=1 (set by .ci/run, the workflows and cibuildwheel
when they test a built wheel), crnn must come from an installed distribution,
not from a source tree, so a file missing from the wheel cannot hide.
"""

import importlib.metadata
import os
from pathlib import Path

import pytest

import crnn

INSTALLED = os.environ.get("CRNN_TEST_INSTALLED", "") not in ("", "0")
PACKAGE = Path(crnn.__file__).resolve().parent


def _distribution():
    try:
        return importlib.metadata.distribution("crnn")
    except importlib.metadata.PackageNotFoundError:
        if INSTALLED:
            raise
        pytest.skip("crnn is imported from a source tree, not installed")


def test_version_is_the_distribution_version():
    assert crnn.__version__ == _distribution().version


def test_public_api_is_exported():
    for name in crnn.__all__:
        assert hasattr(crnn, name), name


def test_typing_marker_and_stubs_ship():
    assert (PACKAGE / "py.typed").is_file()
    for module in ("_engine", "_ops", "model", "layers"):
        assert (PACKAGE / f"{module}.pyi").is_file(), module


@pytest.mark.skipif(not INSTALLED, reason="set CRNN_TEST_INSTALLED=1 to test an installed wheel")
def test_imported_from_the_installed_distribution():
    dist = _distribution()
    files = {Path(dist.locate_file(f)).resolve() for f in dist.files or ()}
    assert Path(crnn.__file__).resolve() in files, (
        f"crnn was imported from {crnn.__file__}, not from the installed distribution")
    tests_root = Path(__file__).resolve().parent.parent
    assert tests_root not in PACKAGE.parents, f"crnn imported from the source tree {PACKAGE}"


@pytest.mark.skipif(not INSTALLED, reason="set CRNN_TEST_INSTALLED=1 to test an installed wheel")
def test_wheel_holds_no_sources():
    # The Cython sources and the generated C belong in the sdist, not the wheel.
    names = {Path(str(f)).name for f in _distribution().files or ()}
    assert not {n for n in names if n.endswith((".pyx", ".pxd", ".pxi", ".c", ".h"))}


@pytest.mark.skipif(not INSTALLED, reason="set CRNN_TEST_INSTALLED=1 to test an installed wheel")
def test_console_scripts_load():
    scripts = [ep for ep in _distribution().entry_points if ep.group == "console_scripts"]
    for ep in scripts:
        assert callable(ep.load()), ep
