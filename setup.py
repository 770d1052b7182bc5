"""Hands the cffi build script to setuptools (metadata is in pyproject.toml).

The C kernels are optional: where they cannot be compiled (no C compiler),
the install goes on without lnsnet._native_c and lnsnet runs on its NumPy
references, saying so in a warning.
"""
from setuptools import setup
from setuptools.command.build_ext import build_ext

try:
    from setuptools.errors import CCompilerError, CompileError, ExecError, LinkError, PlatformError
except ImportError:  # setuptools < 65 keeps them in distutils
    from distutils.errors import CCompilerError, CompileError, LinkError
    from distutils.errors import DistutilsExecError as ExecError
    from distutils.errors import DistutilsPlatformError as PlatformError

BUILD_ERRORS = (CCompilerError, CompileError, ExecError, LinkError, PlatformError, OSError)


class OptionalBuildExt(build_ext):
    """build_ext that warns instead of failing when the C kernels do not compile."""

    def run(self):
        try:
            super().run()
        except BUILD_ERRORS as err:
            self.warn_skipped(err)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except BUILD_ERRORS as err:
            self.warn_skipped(err)

    def warn_skipped(self, err):
        self.warn(f"lnsnet: the C kernels were not built ({err}); "
                  "lnsnet will use its NumPy reference kernels")


setup(
    cffi_modules=["native/build_native.py:ffibuilder"],
    cmdclass={"build_ext": OptionalBuildExt},
)
