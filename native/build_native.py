"""cffi build script for lnsnet._native_c (out-of-line API mode).

setup.py hands `ffibuilder` to setuptools (cffi_modules), so `pip install .`
and `pip install -e .` compile the C kernels in native/ into the extension
lnsnet._native_c; `python native/build_native.py` builds it in place.

- The cffi declarations are the block between CDEF BEGIN and CDEF END of
  lnsnet_native.h, so that the header stays the one list of what Python sees.
- Optimisation: -O3.  No -march: the wheel must run on any x86-64; the AVX2
  and AVX-512 functions carry their own target attributes and are chosen at
  run time (accumulate.c).
- OpenMP (-fopenmp) when the compiler and linker accept it; otherwise the
  kernels are built single-threaded, still correct.
- LNSNET_SANITIZE=1 adds AddressSanitizer and UBSan (-fsanitize=address,
  undefined).  Python itself is not instrumented, so run the tests with
  LD_PRELOAD=$(gcc -print-file-name=libasan.so) and
  ASAN_OPTIONS=detect_leaks=0.
"""
from __future__ import annotations

import os
import tempfile

import setuptools  # noqa: F401  (makes `distutils` below the copy setuptools ships)
from cffi import FFI
from distutils.ccompiler import new_compiler
from distutils.errors import CompileError, LinkError
from distutils.sysconfig import customize_compiler

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = "lnsnet_native.h"
SOURCES = ["elementwise.c", "fixed.c", "quantize.c", "madam.c", "accumulate.c"]
CDEF_BEGIN, CDEF_END = "/* CDEF BEGIN */", "/* CDEF END */"

OPENMP_PROBE = """
#include <omp.h>
int main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }
"""


def cdef_text(header_path: str) -> str:
    """The declarations cffi is told: the marked block of the header."""
    with open(header_path, encoding="utf-8") as fh:
        text = fh.read()
    start = text.index(CDEF_BEGIN) + len(CDEF_BEGIN)
    return text[start:text.index(CDEF_END)]


def compiler_accepts(flags: list[str]) -> bool:
    """True when the C compiler compiles and links an OpenMP program with flags."""
    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w", encoding="utf-8") as fh:
            fh.write(OPENMP_PROBE)
        try:
            objects = compiler.compile([source], output_dir=tmp, extra_postargs=flags)
            compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=flags)
        except (CompileError, LinkError, OSError):
            return False
    return True


def source_path(name: str) -> str:
    """Paths relative to the working directory when possible: setuptools
    builds from the project root and wants relative source paths."""
    path = os.path.join(HERE, name)
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive
        return path


def build_flags() -> tuple[list[str], list[str]]:
    compile_args = ["-O3"]
    link_args: list[str] = []
    if compiler_accepts(["-fopenmp"]):
        compile_args.append("-fopenmp")
        link_args.append("-fopenmp")
    if os.environ.get("LNSNET_SANITIZE") == "1":
        sanitize = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
        compile_args += sanitize
        link_args += sanitize
    return compile_args, link_args


ffibuilder = FFI()
ffibuilder.cdef(cdef_text(os.path.join(HERE, HEADER)))
_compile_args, _link_args = build_flags()
ffibuilder.set_source(
    "lnsnet._native_c",
    f'#include "{HEADER}"',
    sources=[source_path(name) for name in SOURCES],
    include_dirs=[source_path(".")],
    depends=[source_path(HEADER)],
    extra_compile_args=_compile_args,
    extra_link_args=_link_args,
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=os.path.dirname(HERE), verbose=True)
