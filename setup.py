"""Builds the optional compiled kernels of the scattering engine (``melcnn._kernels``).

Everything else is in pyproject.toml. Without a C compiler (or Cython) the extension is skipped
and melcnn runs the same transform in NumPy, more slowly.
"""

from setuptools import setup
from setuptools.command.build_ext import build_ext

try:
    from Cython.Build import cythonize
except ImportError:  # a build without Cython (e.g. --no-build-isolation): NumPy engine only
    cythonize = None


class _BuildExt(build_ext):
    """Optimisation flags the compiler understands (the loops rely on auto-vectorisation)."""

    def build_extensions(self) -> None:
        # -fno-math-errno: sqrtf of the (never negative) squared moduli may vectorise
        flags = ["/O2"] if self.compiler.compiler_type == "msvc" else ["-O3", "-fno-math-errno"]
        for ext in self.extensions:
            ext.extra_compile_args = [*ext.extra_compile_args, *flags]
        super().build_extensions()


ext_modules = []
if cythonize is not None:
    from setuptools import Extension

    ext_modules = cythonize(
        [Extension("melcnn._kernels", ["src/melcnn/_kernels.pyx"])],
        compiler_directives={"language_level": 3},
    )
    for ext in ext_modules:
        ext.optional = True  # a failed compile is a warning, not a failed install (cythonize drops the flag)

setup(ext_modules=ext_modules, cmdclass={"build_ext": _BuildExt})
