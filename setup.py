"""The compiled extensions of crnn and how they are compiled; metadata is in pyproject.toml."""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

# Set CRNN_DEBUG=1 at build time to turn bounds and initialisation checks back
# on (slow): the directives live here, once, not in per-file headers.
_debug = os.environ.get("CRNN_DEBUG", "") not in ("", "0")

directives = {
    "language_level": 3,
    "boundscheck": _debug,
    "wraparound": False,
    "initializedcheck": _debug,
    "cdivision": True,
    "nonecheck": False,
    "embedsignature": True,
    "autotestdict": False,
}

# -fno-trapping-math lets the compiler evaluate both arms of the selects in
# _fastmath.h, which is what turns the exp/tanh loops into SIMD loops. crnn
# never reads floating-point exception flags, and no result changes.
compile_args = [] if os.name == "nt" else ["-O3", "-fno-trapping-math"]

# CRNN_NO_KERNEL=1 builds without crnn's own per-step kernel (_recurrent.h):
# every product then goes to BLAS, as on compilers without vector extensions
# (MSVC). CI builds and tests this path too, so that it cannot rot.
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
if os.environ.get("CRNN_NO_KERNEL", "") not in ("", "0"):
    macros.append(("CRNN_NO_KERNEL", "1"))

headers = ["_fastmath.h", "_cells.h", "_cell_elman.h", "_cell_lstm.h", "_cell_gru.h",
           "_softmax.h", "_recurrent.h", "_pool.h", "_blasthreads.h", "_blas.pxd",
           "_workspace.pxi", "_products.pxi", "_heads.pxi", "_interrupts.pxi", "_loops.pxi",
           "_stack.pxi", "_api.pxi", "_update.pxi",
           "_train.pxi"]

extensions = [
    Extension(
        f"crnn.{name}",
        [f"src/crnn/{name}.pyx"],
        include_dirs=["src/crnn"],
        depends=[f"src/crnn/{h}" for h in headers],
        extra_compile_args=compile_args,
        define_macros=macros,
    )
    for name in ("_engine", "_ops")
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives))
