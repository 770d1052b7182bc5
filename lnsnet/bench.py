"""`lnsnet bench`: how fast the kernels are, next to NumPy float32 in the same run.

Each benchmark is a function in BENCHMARKS taking the parsed options and
returning rows (dicts with the keys of COLUMNS); the table and the --json
output are built from the rows alone, so a new benchmark is one more function in the list, named in
SECTIONS for --only.

matmul: GMAC/s of 8-bit (gamma = 8) LNS matmul, M = K = N = size, for each
accumulation mode, with the C kernels ("native") and the NumPy reference,
beside NumPy float32 matmul measured in the same run, and native / float32.
Operands are normal data encoded and requantized to 8 bits, as the engine
holds activations and weights.  Native timings are the best of --repeat
runs after one warm-up; the NumPy reference is run once, and only where a
16-row slice predicts less than --max-seconds; float32 is the best of runs
before and after each size's LNS runs.  On a shared machine other work
skews the ratios (float32 BLAS most, being multi-threaded): the header
shows the load average.

conv2d: GMAC/s of lnsnet.ops.conv2d forward (im2col, the matmul kernel and
the requantization, as a layer runs it) at LeNet's two convolutions, beside
the float32 baseline's im2col convolution (lnsnet.baseline.Conv2d) of the
same shapes, timed like matmul.

train: seconds per training epoch of each model, LNS engine beside the
float32 baseline (lnsnet.engines), on random uint8 images.  A whole epoch
would take minutes, so --epoch-steps steps are timed, the LNS and float32
steps alternating so both see the same background load, and the median
step is extrapolated to --epoch-images images.

memory: peak memory of one training step of each engine, by tracemalloc:
every Python and NumPy allocation made since the engine was built (its
parameters and optimizer state) plus the step's temporaries.  Memory the C
kernels allocate themselves is not seen; they allocate none per call (their
scratch is a NumPy buffer, counted).

--profile instead prints where one LNS training step's time goes, by
cProfile: each function's own time, summed into buckets (see PROFILE_BUCKETS).
"""
from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import platform
import pstats
import subprocess
import sys
import time
import tracemalloc
from contextlib import contextmanager

import numpy as np

from lnsnet import LNSFormat, native
from lnsnet.kernels import accumulate

COLUMNS = ("benchmark", "size", "mode", "unit", "native", "reference", "float32", "ratio", "note")
SLICE_ROWS = 16
# Run in a child process to time NumPy float32 under another environment.
FLOAT32_PROBE = """
import json, sys, time
import numpy as np
out = {}
for n in map(int, sys.argv[1:]):
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    a @ a
    times = []
    for _ in range(7):
        t0 = time.perf_counter(); a @ a; times.append(time.perf_counter() - t0)
    out[n] = n ** 3 / min(times) / 1e9
print(json.dumps(out))
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024],
                        help="matrix sizes M = K = N (default: 256 512 1024)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed native runs per measurement, the best is kept (default: 3)")
    parser.add_argument("--modes", nargs="+", default=list(accumulate.MODES),
                        choices=accumulate.MODES, help="accumulation modes (default: all)")
    parser.add_argument("--max-seconds", type=float, default=20.0,
                        help="skip a run estimated to take longer (default: 20)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for the C kernels (default: one per core)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--only", type=sections, default=list(SECTIONS),
                        help=f"comma-separated benchmarks to run, of {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--models", nargs="+", default=["mlp", "lenet"], choices=["mlp", "lenet"],
                        help="models for train, memory and --profile (default: mlp lenet)")
    parser.add_argument("--batch", type=int, default=64,
                        help="batch size for conv2d, train, memory and --profile (default: 64)")
    parser.add_argument("--epoch-steps", type=int, default=3,
                        help="timed training steps per engine, extrapolated to an epoch (default: 3)")
    parser.add_argument("--epoch-images", type=int, default=60_000,
                        help="images in the extrapolated epoch (default: 60000, MNIST's training set)")
    parser.add_argument("--profile", action="store_true",
                        help="instead of the benchmarks, profile LNS training steps: time per bucket "
                             "(C kernels, NumPy, lnsnet Python) and the top functions")
    parser.add_argument("--profile-steps", type=int, default=5,
                        help="training steps profiled per model (default: 5)")
    parser.add_argument("--top", type=int, default=12,
                        help="functions listed per model by --profile (default: 12)")


def sections(text: str) -> list[str]:
    """--only's value: benchmark names, checked against SECTIONS."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark(s) {','.join(unknown) or repr(text)}; choose from {','.join(SECTIONS)}")
    return names


def best_time(fn, repeat: int) -> float:
    """Best wall time of `repeat` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def eight_bit_operands(rng, shape, fmt: LNSFormat):
    sign, exp = fmt.encode(rng.standard_normal(shape))
    sign, exp, _ = fmt.requantize(sign, exp)
    return sign, exp


def timed_gmacs(matmul, a, b, fmt, mode, repeat, max_seconds) -> tuple[float | None, str]:
    """GMAC/s of matmul(a, b): best of `repeat` runs after a warm-up, or a
    single run when repeat is 0; (None, why) when a run would take longer
    than max_seconds.  The estimate times one 16-row slice: every row block
    costs the same, so the whole product takes size/16 times as long."""
    (sa, xa), (sb, xb) = a, b
    m, k = sa.shape
    n = sb.shape[1]
    start = time.perf_counter()
    matmul(sa[:SLICE_ROWS], xa[:SLICE_ROWS], sb, xb, fmt.tables, mode)
    estimate = (time.perf_counter() - start) * m / max(1, min(m, SLICE_ROWS))
    if estimate > max_seconds:
        return None, f"est. {estimate:.0f} s per run"
    def full():
        matmul(sa, xa, sb, xb, fmt.tables, mode)

    if repeat == 0:
        start = time.perf_counter()
        full()
        seconds = time.perf_counter() - start
    else:
        seconds = best_time(full, repeat)
    return m * k * n / seconds / 1e9, ""


def float32_gmacs(size: int, repeat: int) -> float:
    rng = np.random.default_rng(size)
    a = rng.standard_normal((size, size)).astype(np.float32)
    b = rng.standard_normal((size, size)).astype(np.float32)
    return size ** 3 / best_time(lambda: a @ b, max(repeat, 5)) / 1e9


def float32_without_coretype(sizes) -> dict[int, float] | None:
    """NumPy float32 GMAC/s in a child process without OPENBLAS_CORETYPE,
    which can hold OpenBLAS to a slower kernel; None when it is not set."""
    if "OPENBLAS_CORETYPE" not in os.environ:
        return None
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    done = subprocess.run([sys.executable, "-c", FLOAT32_PROBE, *map(str, sizes)], env=env,
                          capture_output=True, text=True, check=True)
    return {int(k): v for k, v in json.loads(done.stdout).items()}


def bench_matmul(args) -> list[dict]:
    fmt = LNSFormat(8, 8)
    rng = np.random.default_rng(0)
    free_f32 = float32_without_coretype(args.sizes)
    rows = []
    for size in args.sizes:
        a = eight_bit_operands(rng, (size, size), fmt)
        b = eight_bit_operands(rng, (size, size), fmt)
        f32_before = float32_gmacs(size, args.repeat)
        size_rows = []
        for mode in args.modes:
            row = {"benchmark": "matmul", "size": size, "mode": mode, "unit": "GMAC/s",
                   "native": None, "reference": None, "float32": None, "ratio": None, "note": ""}
            notes = []
            if native.available():
                row["native"], why = timed_gmacs(native.matmul, a, b, fmt, mode, args.repeat,
                                                 args.max_seconds)
                if why:
                    notes.append(f"native skipped ({why})")
            else:
                notes.append("C extension not built")
            row["reference"], why = timed_gmacs(accumulate.matmul, a, b, fmt, mode, 0,
                                                args.max_seconds)
            if why:
                notes.append(f"reference skipped ({why})")
            if free_f32 is not None:
                notes.append(f"float32 without OPENBLAS_CORETYPE: {free_f32[size]:.1f}")
            row["note"] = "; ".join(notes)
            size_rows.append(row)
        f32 = max(f32_before, float32_gmacs(size, args.repeat))
        for row in size_rows:
            row["float32"] = f32
            row["ratio"] = row["native"] / f32 if row["native"] else None
        rows += size_rows
    return rows


BENCHMARKS = [bench_matmul]


def environment() -> dict:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "native": native.available(),
        "simd": native.simd_level(),
        "threads": native.threads() if native.available() else 1,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def format_number(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def table(rows: list[dict]) -> str:
    header = ["benchmark", "size", "mode", "native", "reference", "float32", "native/float32", "note"]
    lines = [[r["benchmark"], str(r["size"]), r["mode"], format_number(r["native"]),
              format_number(r["reference"]), format_number(r["float32"]), format_number(r["ratio"]),
              r["note"]] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
              for i, h in enumerate(header)]
    text_columns = (0, 2, 7)

    def line_of(cells):
        return "  ".join(c.ljust(w) if i in text_columns else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line_of(header), line_of(["-" * w for w in widths])]
    out += [line_of(line) for line in lines]
    return "\n".join(out)


def run(args) -> int:
    if args.threads is not None and native.available():
        native.set_threads(args.threads)
    env = environment()  # before the run: the load average is other work's
    rows = [row for bench in BENCHMARKS for row in bench(args)]
    if args.json:
        print(json.dumps({"environment": env, "results": rows}, indent=2))
        return 0
    units = sorted({r["unit"] for r in rows})
    print(f"lnsnet bench: {', '.join(units)}; C kernels: "
          f"{env['simd'] + ', ' + str(env['threads']) + ' threads' if env['native'] else 'not built'}; "
          f"NumPy {env['numpy']} float32 measured in the same run; "
          f"load average {env['load_average']} on {env['cpus']} CPUs"
          + (f"; OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']}" if env["OPENBLAS_CORETYPE"] else ""))
    print("8-bit LNS (gamma 8) matmul M = K = N = size; native: best of "
          f"{args.repeat} after a warm-up; reference: one run, skipped past {args.max_seconds:g} s")
    print(table(rows))
    return 0
