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
float32 baseline (lnsnet.engines), on random uint8 images, the two engines
taking turns every ALTERNATE_STEPS steps so both see the same background
load.  A whole epoch takes minutes, so by default --epoch-steps steps are
timed and the median step is extrapolated to --epoch-images images;
--full-epoch times every step of a real epoch.

memory: peak memory of one training step of each engine, by tracemalloc:
every Python and NumPy allocation made since the engine was built (its
parameters and optimizer state) plus the step's temporaries.  Memory the C
kernels allocate themselves is not seen; they allocate none per call (their
scratch is a NumPy buffer, counted).

--profile instead prints where one LNS training step's time goes, by
cProfile: each function's own time, summed into buckets (see PROFILE_BUCKETS).

--only picks sections (matmul, conv, train, memory); the options above
scale them down (--batch, --epoch-steps, --models) for quick runs.  On a
machine shared with other work, threads waiting on each other dominate:
in one loaded run (load 5 on 2 cores) the 2-thread C matmul took 17 times
as long per training step as with --threads 1, and a 2-thread OpenBLAS
10 times as long as with OPENBLAS_NUM_THREADS=1.  There, compare with
`OPENBLAS_NUM_THREADS=1 lnsnet bench --threads 1` (the header shows both).
"""
from __future__ import annotations

import argparse
import cProfile
import importlib
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
    parser.add_argument("--epoch-steps", type=int, default=10,
                        help="timed training steps per engine, extrapolated to an epoch (default: 10)")
    parser.add_argument("--epoch-images", type=int, default=60_000,
                        help="images in the epoch (default: 60000, MNIST's training set)")
    parser.add_argument("--full-epoch", action="store_true",
                        help="time a whole epoch of --epoch-images images (minutes) instead of "
                             "extrapolating from --epoch-steps steps")
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


# LeNet's two convolutions (lnsnet.nn.lenet): in channels, out channels,
# input side, padding; 5x5 kernels, stride 1.
LENET_CONVS = ((1, 6, 28, 2), (6, 16, 14, 0))
CONV_KERNEL = 5
LNSNET_DIR = os.path.dirname(os.path.abspath(native.__file__))
MIB = 1 << 20


@contextmanager
def reference_kernels():
    """Dispatch lnsnet.kernels to the NumPy references inside the block
    (native.enabled() reads LNSNET_NATIVE on every call)."""
    before = os.environ.get("LNSNET_NATIVE")
    os.environ["LNSNET_NATIVE"] = "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ["LNSNET_NATIVE"]
        else:
            os.environ["LNSNET_NATIVE"] = before


def lns_columns(value) -> dict:
    """An LNS measurement goes in "native" when the C kernels ran it, else
    in "reference": without them the engine runs the NumPy references."""
    return {"native": value, "reference": None} if native.enabled() else {"native": None, "reference": value}


def bench_conv(args) -> list[dict]:
    # Imported here: lnsnet.ops and the engines pull in much more than matmul needs.
    from lnsnet import ops
    from lnsnet.baseline import Conv2d as Float32Conv2d
    from lnsnet.precision import Precision
    from lnsnet.tensor import no_grad, tensor

    fmt = LNSFormat(8, 8)
    rng = np.random.default_rng(1)
    k = CONV_KERNEL
    rows = []
    for c, o, side, pad in LENET_CONVS:
        # Weights at He-like scale so outputs stay inside the 8-bit range, as in a trained layer.
        x_values = rng.standard_normal((args.batch, c, side, side))
        w_values = rng.standard_normal((o, c, k, k)) * math.sqrt(2 / (c * k * k))
        b_values = 0.1 * rng.standard_normal(o)
        x, w, b = tensor(x_values, fmt), tensor(w_values, fmt), tensor(b_values, fmt)
        x_one = tensor(x_values[:1], fmt)
        out_side = side + 2 * pad - k + 1
        macs = args.batch * o * out_side * out_side * c * k * k
        f32_layer = Float32Conv2d(w_values.astype(np.float32), b_values.astype(np.float32), 1, pad)
        x32 = x_values.astype(np.float32)

        def float32_gmacs_now() -> float:
            return macs / best_time(lambda: f32_layer.forward(x32), max(args.repeat, 5)) / 1e9

        size = f"{args.batch}x{c}x{side}x{side} {o}@{k}x{k} pad {pad}"
        f32_before = float32_gmacs_now()
        shape_rows = []
        for mode in args.modes:
            row = {"benchmark": "conv2d", "size": size, "mode": mode, "unit": "GMAC/s",
                   "native": None, "reference": None, "float32": None, "ratio": None, "note": ""}
            notes = []
            with Precision(accumulate=mode), no_grad():
                if native.enabled():
                    row["native"] = macs / best_time(lambda: ops.conv2d(x, w, b, 1, pad), args.repeat) / 1e9
                else:
                    notes.append("C kernels not enabled")
                with reference_kernels():
                    # One image predicts the batch: every image costs the same.
                    start = time.perf_counter()
                    ops.conv2d(x_one, w, b, 1, pad)
                    estimate = (time.perf_counter() - start) * args.batch
                    if estimate > args.max_seconds:
                        notes.append(f"reference skipped (est. {estimate:.0f} s per run)")
                    else:
                        start = time.perf_counter()
                        ops.conv2d(x, w, b, 1, pad)
                        row["reference"] = macs / (time.perf_counter() - start) / 1e9
            row["note"] = "; ".join(notes)
            shape_rows.append(row)
        f32 = max(f32_before, float32_gmacs_now())
        for row in shape_rows:
            row["float32"] = f32
            row["ratio"] = row["native"] / f32 if row["native"] else None
        rows += shape_rows
    return rows


def random_batch(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-shaped uint8 images and labels: a step's cost does not depend on the pixels."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (batch, 28, 28), dtype=np.uint8), rng.integers(0, 10, batch)


def make_engine(model: str, batch: int, float32: bool):
    from lnsnet.engines import make_engine as engine_for
    from lnsnet.train import TrainConfig

    return engine_for(TrainConfig(model=model, batch_size=batch, dataset="digits", float32=float32))


# Training steps each engine runs before the other takes over (bench_train).
ALTERNATE_STEPS = 10


def bench_train(args) -> list[dict]:
    batch = args.batch
    if args.full_epoch:
        # Every image of the epoch once, so a real epoch is timed end to end.
        steps = math.ceil(args.epoch_images / batch)
        images, labels = random_batch(steps * batch)
        note = f"measured: one epoch of {args.epoch_images} images, {steps} steps"
    else:
        steps = max(1, args.epoch_steps)
        images, labels = random_batch(batch)
        note = f"extrapolated: median of {steps} steps x {args.epoch_images}/{batch}"
    rows = []
    for model in args.models:
        engines = {f32: make_engine(model, batch, f32) for f32 in (False, True)}
        for engine in engines.values():
            engine.train_batch(images[:batch], labels[:batch])  # warm-up: tables, caches, optimizer state
        times = {False: [], True: []}
        # Alternate the engines in blocks of steps, so that a change in
        # background load hits both and the ratio stays fair, but neither
        # pays often for the other's threads: OpenMP's and OpenBLAS's
        # workers spin for a while after each parallel region, and on two
        # cores that slows the other engine's next step (LNS mlp steps took
        # 24 ms alternating one by one, 14 ms alone).
        for first in range(0, steps, ALTERNATE_STEPS):
            block = range(first, min(first + ALTERNATE_STEPS, steps))
            for f32, engine in engines.items():
                for step in block:
                    lo = step * batch if args.full_epoch else 0
                    hi = min(lo + batch, args.epoch_images) if args.full_epoch else batch
                    start = time.perf_counter()
                    engine.train_batch(images[lo:hi], labels[lo:hi])
                    times[f32].append(time.perf_counter() - start)
        if args.full_epoch:
            lns, f32 = (float(np.sum(times[key])) for key in (False, True))
        else:
            lns, f32 = (float(np.median(times[key])) * args.epoch_images / batch for key in (False, True))
        accumulate_mode = engines[False].config.accumulate
        rows.append({"benchmark": "train epoch", "size": model, "mode": accumulate_mode, "unit": "s/epoch",
                     **lns_columns(lns), "float32": f32, "ratio": lns / f32,
                     "note": note + ("; target <= 4" if model == "mlp" else "")})
    return rows


def peak_rss() -> int | None:
    """This process's peak resident set in bytes (VmHWM), or None off Linux.
    Not ru_maxrss: Linux carries that across exec from the forking parent,
    so a child of a big bench process would report the parent's peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def memory_probe(model: str, batch: int, float32: bool, threads: int | None) -> dict:
    """Peak traced memory of one training step (after a warm-up step) of a
    freshly built engine; run in a child process so that no cache built by
    an earlier benchmark hides memory the engine needs."""
    # Imported before tracing starts: module code and constants are no engine's memory.
    for module in ("lnsnet.engines", "lnsnet.train"):
        importlib.import_module(module)

    if threads is not None and native.available():
        native.set_threads(threads)
    images, labels = random_batch(batch)
    tracemalloc.start()
    try:
        engine = make_engine(model, batch, float32)
        engine.train_batch(images, labels)
        state, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        engine.train_batch(images, labels)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {"peak": peak, "state": state, "rss": peak_rss()}


MEMORY_CHILD = """
import json, sys
from lnsnet import bench
model, batch, float32, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
print(json.dumps(bench.memory_probe(model, batch, float32, int(threads) if threads else None)))
"""


def bench_memory(args) -> list[dict]:
    # One child per engine, all at once: memory, unlike time, does not
    # suffer from the children sharing the cores, and the run is shorter.
    children = {(model, f32): subprocess.Popen(
        [sys.executable, "-c", MEMORY_CHILD, model, str(args.batch), str(int(f32)),
         "" if args.threads is None else str(args.threads)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for model in args.models for f32 in (False, True)}
    probes = {}
    for key, child in children.items():
        out, err = child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"memory probe {key} failed:\n{err}")
        probes[key] = json.loads(out)
    rows = []
    for model in args.models:
        lns, f32 = probes[model, False], probes[model, True]
        note = f"state {lns['state'] / MIB:.1f} vs {f32['state'] / MIB:.1f}"
        if lns["rss"] and f32["rss"]:
            note += f"; peak RSS {lns['rss'] / MIB:.0f} vs {f32['rss'] / MIB:.0f}"
        rows.append({"benchmark": "peak memory", "size": model, "mode": "linear", "unit": "MiB",
                     **lns_columns(lns["peak"] / MIB), "float32": f32["peak"] / MIB,
                     "ratio": lns["peak"] / f32["peak"], "note": note + "; target <= 1"})
    return rows


SECTIONS = {"matmul": bench_matmul, "conv": bench_conv, "train": bench_train, "memory": bench_memory}
BENCHMARKS = list(SECTIONS.values())
# What each section's table shows, printed above it ({args} are the options).
SECTION_HEADERS = {
    "matmul": "8-bit LNS (gamma 8) matmul M = K = N = size, GMAC/s; native: best of {a.repeat} after a "
              "warm-up; reference: one run, skipped past {a.max_seconds:g} s",
    "conv2d": "conv2d forward at LeNet's shapes, GMAC/s: lnsnet.ops.conv2d at 8 bits (im2col, kernel, "
              "requantize) beside the float32 im2col conv (lnsnet.baseline); native: best of {a.repeat}",
    "train epoch": "training epoch of {a.epoch_images} images, seconds, {how} (LNS and float32 "
                   "alternating every " + str(ALTERNATE_STEPS) + " steps, batch {a.batch}); "
                   "native/float32 = LNS time / float32 time",
    "peak memory": "peak memory of one training step, MiB: tracemalloc peak (Python and NumPy allocations, "
                   "parameters and optimizer state included) in a fresh child process per engine; "
                   "native/float32 = LNS / float32; note: LNS vs float32 traced memory before the step "
                   "(parameters, optimizer state, kept caches) and whole-process peak RSS (VmHWM)",
}


# cProfile buckets for --profile, by where a function lives.  A Python
# function's own time includes the NumPy operators (+, *, indexing) written
# inline in it: cProfile sees calls, not operators, so "lnsnet Python" is
# an upper bound on interpreter overhead.
PROFILE_BUCKETS = ("C kernels", "kernel glue", "NumPy", "lnsnet Python", "other")


def profile_bucket(key: tuple) -> str:
    filename, _, name = key
    if filename == "~":  # a built-in: cProfile names it by its repr
        if "lnsnet._native_c" in name:
            return "C kernels"
        if "_cffi_backend" in name:
            return "kernel glue"
        return "NumPy" if "numpy" in name else "other"
    path = os.path.abspath(filename)
    if path == os.path.abspath(native.__file__):
        return "kernel glue"  # lnsnet/native.py: argument checks and cffi buffers around each C call
    if path.startswith(LNSNET_DIR + os.sep):
        return "lnsnet Python"
    return "NumPy" if f"{os.sep}numpy{os.sep}" in path else "other"


def function_label(key: tuple) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    path = os.path.abspath(filename)
    for root, prefix in ((LNSNET_DIR, "lnsnet/"), (os.path.dirname(np.__file__), "numpy/")):
        if path.startswith(root + os.sep):
            path = prefix + os.path.relpath(path, root)
            break
    return f"{path}:{line}({name})"


def profile_model(model: str, batch: int, steps: int, top: int) -> dict:
    """Where an LNS training step's time goes: seconds per step by bucket and the top functions."""
    images, labels = random_batch(batch)
    engine = make_engine(model, batch, False)
    engine.train_batch(images, labels)  # warm-up
    steps = max(1, steps)
    start = time.perf_counter()
    for _ in range(steps):
        engine.train_batch(images, labels)
    plain = (time.perf_counter() - start) / steps
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    for _ in range(steps):
        engine.train_batch(images, labels)
    profiler.disable()
    profiled = (time.perf_counter() - start) / steps
    stats = pstats.Stats(profiler).stats  # key -> (primitive calls, calls, tottime, cumtime, callers)
    buckets = dict.fromkeys(PROFILE_BUCKETS, 0.0)
    for key, (_, _, own, _, _) in stats.items():
        buckets[profile_bucket(key)] += own / steps
    ranked = sorted(stats.items(), key=lambda item: -item[1][2])[:top]
    return {"model": model, "batch": batch, "steps": steps, "native": native.enabled(),
            "step_seconds": plain, "profiled_step_seconds": profiled, "buckets": buckets,
            "top": [{"function": function_label(key), "bucket": profile_bucket(key),
                     "seconds": own / steps, "calls": calls / steps}
                    for key, (_, calls, own, _, _) in ranked]}


def profile_text(report: dict) -> str:
    total = sum(report["buckets"].values())
    out = [f"{report['model']}, LNS engine, batch {report['batch']}, {report['steps']} steps, C kernels "
           f"{'on' if report['native'] else 'off'}: {report['step_seconds']:.4f} s/step unprofiled, "
           f"{report['profiled_step_seconds']:.4f} s/step under cProfile (own time summed: {total:.4f})",
           f"  {'bucket':<14} {'s/step':>8} {'share':>6}"]
    out += [f"  {name:<14} {seconds:8.4f} {seconds / total if total else 0:6.1%}"
            for name, seconds in report["buckets"].items()]
    out.append(f"  top {len(report['top'])} functions by own time:")
    out.append(f"  {'s/step':>8} {'share':>6} {'calls':>6}  {'bucket':<14} function")
    out += [f"  {t['seconds']:8.4f} {t['seconds'] / total if total else 0:6.1%} {t['calls']:6.0f}  "
            f"{t['bucket']:<14} {t['function']}" for t in report["top"]]
    return "\n".join(out)


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
        # float32 BLAS threads: on a busy machine a 2-thread BLAS can run
        # several times slower than one thread, which moves every ratio.
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


# Environment variables that change how NumPy's BLAS runs, shown in the header when set.
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


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
    if args.profile:
        reports = [profile_model(model, args.batch, args.profile_steps, args.top) for model in args.models]
        if args.json:
            print(json.dumps({"environment": env, "profile": reports}, indent=2))
            return 0
        print(f"lnsnet bench --profile: cProfile own time per training step; C kernels: "
              f"{env['simd'] + ', ' + str(env['threads']) + ' threads' if env['native'] else 'not built'}; "
              f"load average {env['load_average']} on {env['cpus']} CPUs")
        print("buckets: C kernels = lnsnet._native_c functions; kernel glue = lnsnet/native.py and cffi; "
              "NumPy = NumPy functions and methods; lnsnet Python = the rest of lnsnet, including NumPy "
              "operators written inline (cProfile sees calls only); other = builtins, standard library")
        for report in reports:
            print()
            print(profile_text(report))
        return 0
    rows = [row for name in SECTIONS if name in args.only for row in SECTIONS[name](args)]
    if args.json:
        print(json.dumps({"environment": env, "results": rows}, indent=2))
        return 0
    units = list(dict.fromkeys(r["unit"] for r in rows))
    print(f"lnsnet bench: {', '.join(units)}; C kernels: "
          f"{env['simd'] + ', ' + str(env['threads']) + ' threads' if env['native'] else 'not built'}; "
          f"NumPy {env['numpy']} float32 measured in the same run; "
          f"load average {env['load_average']} on {env['cpus']} CPUs"
          + "".join(f"; {name}={env[name]}" for name in BLAS_ENV if env[name]))
    for benchmark in dict.fromkeys(r["benchmark"] for r in rows):
        print()
        how = ("MEASURED over a whole epoch" if args.full_epoch else
               f"EXTRAPOLATED from the median of {args.epoch_steps} steps")
        print(SECTION_HEADERS[benchmark].format(a=args, how=how))
        print(table([r for r in rows if r["benchmark"] == benchmark]))
    return 0
