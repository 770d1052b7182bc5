"""Killing `lnsnet train` at a random moment and resuming gives the weights of a run that never stopped.

`lnsnet train` runs as a subprocess; after it prints its 'training ...' line
and a random (seeded) delay it gets SIGINT or SIGTERM.  It saves where it
was and exits with status 130; `--resume FILE` then finishes the run, and
the final master weights and optimizer state in FILE must equal those of an
uninterrupted run bit for bit.

The signal may also land where there is nothing to save: before the loop
has taken over the signals (no checkpoint yet: the test starts the run
afresh, as a user would), or after the last epoch was saved (the checkpoint
already holds the final weights; resuming trains nothing).  Both are
handled below and counted, so a run of this test says where its signals
landed.
"""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from lnsnet import checkpoint

RUN = ["--dataset", "digits", "--train-limit", "512", "--test-limit", "128", "--epochs", "2",
       "--batch-size", "32", "--quiet"]
TRIALS = [signal.SIGINT, signal.SIGTERM, signal.SIGINT]
SEED = 20240229


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The subprocesses' environment: the data cache in a temporary folder, and one OpenMP thread
    (the kernels give the same integers for any thread count, and on a busy machine one thread is
    several times faster for this small model)."""
    return {**os.environ, "LNSNET_DATA": str(tmp_path_factory.mktemp("data")), "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1"}


def train(args, env, cwd):
    return subprocess.run([sys.executable, "-m", "lnsnet.cli", "train", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def final_state(path) -> dict[str, np.ndarray]:
    """The model's master weights and the optimizer's state in a checkpoint."""
    arrays, _ = checkpoint.read_npz(path)
    return {k: v for k, v in arrays.items() if k.startswith(("model/", "optimizer/"))}


@pytest.fixture(scope="module")
def uninterrupted(env, tmp_path_factory):
    """(final state, seconds from the 'training' line to the end) of a run that never stopped."""
    folder = tmp_path_factory.mktemp("straight")
    proc = subprocess.Popen([sys.executable, "-m", "lnsnet.cli", "train", *RUN, "--save", "run.npz"],
                            env=env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("training")
    start = time.monotonic()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return final_state(folder / "run.npz"), time.monotonic() - start


def interrupt(signum, delay: float, env, cwd):
    """Start a run, signal it `delay` seconds after its 'training' line; (status, stdout, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "lnsnet.cli", "train", *RUN, "--save", "run.npz"],
                            env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    assert first.startswith("training"), first + proc.stderr.read()
    time.sleep(delay)
    proc.send_signal(signum)   # a no-op if the run has ended already
    out, err = proc.communicate(timeout=300)
    return proc.returncode, first + out, err


def test_interrupt_at_random_moments_then_resume(uninterrupted, env, tmp_path):
    want, duration = uninterrupted
    rng = random.Random(SEED)
    landed = []
    for trial, signum in enumerate(TRIALS):
        cwd = tmp_path / f"trial{trial}"
        cwd.mkdir()
        delay = rng.uniform(0.02, 1.1 * duration)
        status, out, err = interrupt(signum, delay, env, cwd)
        saved = cwd / "run.npz"
        if status == 130 and "interrupted before training started" in err:
            # SIGINT before the loop held the signals: nothing trained, nothing saved.
            assert not saved.exists(), err
            again = train([*RUN, "--save", "run.npz"], env, cwd)
            assert again.returncode == 0, again.stderr
            landed.append("before the first step: restarted")
        elif status == 130:
            stop = re.search(r"interrupted at epoch (\d+), batch (\d+); saved to run.npz", err)
            assert stop and "Traceback" not in err, err
            resumed = train(["--resume", "run.npz", "--save", "run.npz", "--quiet"], env, cwd)
            assert resumed.returncode == 0, resumed.stderr
            assert f"at epoch {stop[1]}, batch {stop[2]}" in resumed.stdout
            landed.append(f"epoch {stop[1]} batch {stop[2]}")
        elif status == 0:
            assert "test accuracy" in out
            landed.append("after the run")
        else:
            # Killed before the loop held the signals (nothing trained, nothing to save), or after
            # it let them go (the final checkpoint is written): in both no step is half done.
            assert status == -signum, (status, err)
            if saved.exists():
                resumed = train(["--resume", "run.npz", "--save", "run.npz", "--quiet"], env, cwd)
                assert resumed.returncode == 0, resumed.stderr
                landed.append("after the last save")
            else:
                assert "interrupted at" not in err
                again = train([*RUN, "--save", "run.npz"], env, cwd)
                assert again.returncode == 0, again.stderr
                landed.append("before the first step: restarted")
        got = final_state(saved)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key].dtype == want[key].dtype and np.array_equal(got[key], want[key]), (
                f"trial {trial} ({signal.Signals(signum).name} after {delay:.2f} s, {landed[-1]}): {key}")
    print("signals landed:", "; ".join(landed))
