"""Every ```python block of README.md runs as written, each in a fresh interpreter
in an empty folder; a block that imports a missing optional package (an extra)
is skipped, naming it."""

import re
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
if not README.is_file():
    pytest.skip("no README.md next to tests/", allow_module_level=True)

BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"),
                    flags=re.M | re.S)
# crnn's own requirements: a block that imports anything else is skipped without it.
REQUIRED = ("crnn", "numpy", "scipy")


def _title(block):
    first = block.strip().splitlines()[0]
    return first[:40]


@pytest.mark.parametrize("block", BLOCKS, ids=[f"{i}:{_title(b)}" for i, b in enumerate(BLOCKS)])
def test_readme_block_runs(block, tmp_path):
    imported = set(re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", block, flags=re.M))
    missing = sorted(m for m in imported - set(REQUIRED) if find_spec(m) is None)
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    out = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr


def test_the_readme_has_blocks():
    assert len(BLOCKS) >= 5
