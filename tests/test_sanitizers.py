"""The C kernels under AddressSanitizer and UndefinedBehaviorSanitizer, and a
training step under valgrind.

AddressSanitizer + UBSan: the extension is rebuilt with LNSNET_SANITIZE=1
(native/build_native.py) into a temporary copy of the package, and the
native bit-exactness tests (tests/test_native.py) and the kernel fuzzing
(tests/test_fuzz_kernels.py) run against that copy in a subprocess.  Python
itself is not instrumented, so libasan is preloaded; CPython keeps memory
until exit by design, so leak detection is off; any UBSan report halts.
The run must pass and print no sanitizer report.  (UBSan's signed-overflow
check stays silent: setuptools compiles with CPython's -fwrapv, under which
signed overflow is defined to wrap.  Shifts, bounds, alignment and the rest
are checked.)

valgrind: one training step of the mlp (batch 8) on the C kernels of the
build under test, under memcheck, must show no invalid read or write, and
no error of any kind inside lnsnet's extension.  The dynamic loader's
word-wise strncmp reads past the end of short strings on purpose; that is
suppressed (valgrind ships the suppression only with glibc's debug symbols).

Budget: about 1 minute for each of the two (measured on 2 busy cores).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lnsnet
from lnsnet import native

REPO = Path(__file__).resolve().parents[1]
SANITIZED_TESTS = ("tests/test_native.py", "tests/test_fuzz_kernels.py")
SANITIZER_REPORT = re.compile(r"ERROR: AddressSanitizer|runtime error:|SUMMARY: \w+Sanitizer")

BUILD = """
import sys
sys.path.insert(0, sys.argv[1])
import build_native
build_native.ffibuilder.compile(tmpdir=".")
"""

LOADER_STRNCMP = """
{
   dynamic-loader-strncmp-reads-whole-words
   Memcheck:Addr8
   fun:strncmp
   fun:is_dst
}
"""

TRAINING_STEP = """
import numpy as np
from lnsnet import native
from lnsnet.engines import make_engine
from lnsnet.train import TrainConfig

assert native.enabled(), "the C kernels are not in use"
engine = make_engine(TrainConfig(model="mlp", batch_size=8))
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (8, 28, 28), dtype=np.uint8)
loss, _ = engine.train_batch(images, rng.integers(0, 10, 8))
print(f"one step done: loss {loss:.4f}, SIMD {native.simd_level()}")
"""


def libasan() -> str:
    """The path of gcc's libasan, or skip saying what is missing."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed: cannot build the sanitized extension")
    found = subprocess.run([gcc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(found) or not os.path.exists(found):
        pytest.skip("gcc has no libasan.so (install libasan for gcc to run this test)")
    return found


@pytest.fixture(scope="module")
def sanitized_package(tmp_path_factory) -> tuple[Path, str]:
    """(a folder holding a copy of the lnsnet package whose extension is built with ASan and
    UBSan, the libasan to preload)."""
    asan = libasan()
    root = tmp_path_factory.mktemp("sanitized")
    shutil.copytree(REPO / "lnsnet", root / "lnsnet",
                    ignore=shutil.ignore_patterns("*.so", "_native_c.c", "__pycache__"))
    build = subprocess.run([sys.executable, "-c", BUILD, str(REPO / "native")], cwd=root,
                           env={**os.environ, "LNSNET_SANITIZE": "1"},
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    built = list((root / "lnsnet").glob("_native_c*.so"))
    assert len(built) == 1, built
    assert b"__asan_init" in built[0].read_bytes(), "LNSNET_SANITIZE=1 did not instrument the build"
    assert b"__ubsan_handle" in built[0].read_bytes(), "LNSNET_SANITIZE=1 did not add UBSan"
    return root, asan


def test_native_tests_pass_under_address_and_undefined_behaviour_sanitizers(sanitized_package):
    root, asan = sanitized_package
    env = {**os.environ, "PYTHONPATH": str(root), "LD_PRELOAD": asan, "LNSNET_NATIVE": "1",
           "ASAN_OPTIONS": "detect_leaks=0",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    which = subprocess.run([sys.executable, "-c", "import lnsnet._native_c as m; print(m.__file__)"],
                           cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert which.stdout.strip().startswith(str(root)), which.stdout + which.stderr
    # From root, so that `lnsnet` is the sanitized copy and not the work tree; with -s, because
    # a sanitizer ends the process at once and pytest would never show what it captured.
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                          *(str(REPO / t) for t in SANITIZED_TESTS)],
                         cwd=root, env=env, capture_output=True, text=True, timeout=900)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-5000:]
    assert not SANITIZER_REPORT.search(output), output[-5000:]
    assert re.search(r"\d+ passed", output)


def memcheck_errors(log: str) -> list[str]:
    """The error blocks of a valgrind log: a line naming the error, then its stack."""
    blocks = re.split(r"==\d+== \n", log)
    return [b for b in blocks if re.search(r"==\d+== (Invalid|Use of|Conditional|Syscall|Mismatched|"
                                          r"Source and destination|Argument)", b)]


def test_a_training_step_under_valgrind(tmp_path):
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed")
    if not native.available():
        pytest.skip("the C extension is not built (or not importable without a preload)")
    suppressions = tmp_path / "loader.supp"
    suppressions.write_text(LOADER_STRNCMP)
    package_root = Path(lnsnet.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONMALLOC": "malloc", "PYTHONPATH": str(package_root),
           "LNSNET_NATIVE": "1"}
    run = subprocess.run(["valgrind", "--error-exitcode=99", "--errors-for-leak-kinds=none",
                          f"--suppressions={suppressions}", sys.executable, "-c", TRAINING_STEP],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert "one step done" in run.stdout, run.stdout + run.stderr[-5000:]
    errors = memcheck_errors(run.stderr)
    invalid = [e for e in errors if re.search(r"Invalid (read|write)", e)]
    ours = [e for e in errors if "_native_c" in e]
    assert not invalid, "\n".join(invalid)[:5000]
    assert not ours, "\n".join(ours)[:5000]
