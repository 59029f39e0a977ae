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
}

# -fno-trapping-math lets the compiler evaluate both arms of the selects in
# _fastmath.h, which is what turns the exp/tanh loops into SIMD loops. crnn
# never reads floating-point exception flags, and no result changes.
compile_args = [] if os.name == "nt" else ["-O3", "-fno-trapping-math"]

extensions = [
    Extension(
        f"crnn.{name}",
        [f"src/crnn/{name}.pyx"],
        include_dirs=["src/crnn"],
        depends=["src/crnn/_fastmath.h", "src/crnn/_rows.h", "src/crnn/_gemm.h",
                 "src/crnn/_blas.pxd"],
        extra_compile_args=compile_args,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for name in ("_elman", "_ops")
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives))
