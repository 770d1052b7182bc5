"""Checkpoints: bit-exact resume, atomic writes, and clear errors that change nothing."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from lnsnet import checkpoint, nn, optim
from lnsnet.format import LNSFormat
from lnsnet.ops import cross_entropy
from lnsnet.tensor import tensor

F8 = LNSFormat(8, 8)
F16 = LNSFormat(16, 1024)


def problem():
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(64, 20))
    return inputs, np.argmax(inputs @ rng.normal(size=(20, 5)), axis=1)


def make(kind="madam", master=F16, rounding="nearest", hidden=12):
    """A small net, its optimizer (stochastic rounding draws from the saved generator) and a
    cosine schedule (its position is saved too)."""
    model = nn.Sequential(nn.Linear(20, hidden, seed=1, master=master), nn.ReLU(),
                          nn.Linear(hidden, 5, seed=2, master=master))
    if kind == "madam":
        opt = optim.Madam(model.parameters(), lr=0.02, rounding=rounding, seed=7)
    elif kind == "sgd":
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, rounding=rounding, seed=7)
    else:
        opt = optim.Adam(model.parameters(), lr=0.003, rounding=rounding, seed=7)
    return model, opt, optim.CosineLR(opt, total_steps=12, min_lr=1e-4)


def train(model, opt, schedule, steps, start):
    inputs, labels = problem()
    for step in range(start, start + steps):
        batch = np.arange(step * 16, step * 16 + 16) % len(labels)
        opt.zero_grad()
        cross_entropy(model(tensor(inputs[batch])), labels[batch]).backward()
        opt.step()
        schedule.step()


def snapshot(model, opt, schedule):
    """Everything that determines the future of a run, as comparable arrays."""
    return {**{f"m/{k}": v for k, v in model.state_dict().items()},
            **{f"o/{k}": v for k, v in opt.state_dict().items()},
            **{f"s/{k}": v for k, v in schedule.state_dict().items()}}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key


@pytest.mark.parametrize("kind, rounding", [("madam", "nearest"), ("madam", "stochastic"),
                                             ("sgd", "stochastic"), ("adam", "nearest")])
def test_resume_is_bit_exact(tmp_path, kind, rounding):
    path = tmp_path / "run.npz"
    straight = make(kind, rounding=rounding)
    train(*straight, steps=8, start=0)

    first = make(kind, rounding=rounding)
    train(*first, steps=5, start=0)
    checkpoint.save(path, *first, extra={"note": "after 5 steps"})
    resumed = make(kind, rounding=rounding)
    assert checkpoint.load(path, *resumed) == {"note": "after 5 steps"}
    assert resumed[1].steps == 5
    train(*resumed, steps=3, start=5)
    assert_same(snapshot(*straight), snapshot(*resumed))


def test_the_file_is_integer_codes(tmp_path):
    path = tmp_path / "c.npz"
    model, opt, schedule = make()
    train(model, opt, schedule, steps=2, start=0)
    checkpoint.save(path, model, opt, schedule)
    with np.load(path, allow_pickle=False) as npz:
        kinds = {key: npz[key].dtype.kind for key in npz.files}
    weights_and_state = [k for k in kinds if k.startswith("model/") or ".codes" in k or k.endswith(".t")]
    assert weights_and_state and all(kinds[k] in "iu" for k in weights_and_state)
    # Floats are only the hyperparameters the constants are rebuilt from.
    assert {k for k, kind in kinds.items() if kind == "f"} <= {
        *(f"optimizer/group0.{h}" for h in opt.defaults), "schedule/base_lrs"}


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    model, opt, schedule = make()
    checkpoint.save(path, model, opt)
    good = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    train(model, opt, schedule, steps=1, start=0)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, model, opt)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["c.npz"]  # no temporary file left behind


def test_a_failed_rename_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    model, opt, schedule = make()
    checkpoint.save(path, model, opt)
    good = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("the machine went down")

    monkeypatch.setattr(os, "replace", crash)
    train(model, opt, schedule, steps=1, start=0)
    with pytest.raises(OSError, match="went down"):
        checkpoint.save(path, model, opt)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["c.npz"]


def test_an_interrupt_right_after_the_rename_stays_an_interrupt(tmp_path, monkeypatch):
    """Ctrl-C landing just after the rename: the new checkpoint is in place and the
    KeyboardInterrupt is not turned into a FileNotFoundError by the clean-up."""
    path = tmp_path / "c.npz"
    model, opt, _ = make()
    real_replace = os.replace

    def replace_then_interrupt(src, dst):
        real_replace(src, dst)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, model, opt)
    checkpoint.load(path, *make()[:2])
    assert os.listdir(tmp_path) == ["c.npz"]


WRITER = """
import sys
import numpy as np
from lnsnet import checkpoint

path = sys.argv[1]
for i in range(10 ** 6):
    # a few MB, so that a kill often lands mid-write
    checkpoint.write_npz(path, {"round": np.array(i), "data": np.full(1 << 19, i % 256, np.int64)})
    print(i, flush=True)
"""


def test_a_process_killed_while_writing_leaves_a_whole_checkpoint(tmp_path):
    """SIGKILL at random moments of a loop of writes: the file is always a whole checkpoint,
    the last or the one before (only hidden temporary files may stay behind)."""
    path = tmp_path / "c.npz"
    rng = random.Random(5)
    for _ in range(4):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                                  text=True)
        writer.stdout.readline()   # one checkpoint is written
        time.sleep(rng.uniform(0, 0.3))
        writer.send_signal(signal.SIGKILL)
        writer.communicate()
        arrays, _ = checkpoint.read_npz(path)
        assert (arrays["data"] == int(arrays["round"]) % 256).all()
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["c.npz"]


# ---- bad files: a clear ValueError, and nothing changed --------------------------------
@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "good.npz"
    model, opt, schedule = make()
    train(model, opt, schedule, steps=3, start=0)
    checkpoint.save(path, model, opt, schedule)
    return path


def load_into_fresh(path, **kwargs):
    """Try to load path into a fresh run; assert that the run is unchanged when it fails."""
    model, opt, schedule = make(**kwargs)
    train(model, opt, schedule, steps=1, start=0)
    before = snapshot(model, opt, schedule)
    try:
        checkpoint.load(path, model, opt, schedule)
    finally:
        assert_same(before, snapshot(model, opt, schedule))


def test_truncated_file(saved, tmp_path):
    data = saved.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 30):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="not a readable lnsnet checkpoint"):
            load_into_fresh(bad)


def test_foreign_files(tmp_path):
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.ones(3))
    with pytest.raises(ValueError, match="not an lnsnet checkpoint"):
        load_into_fresh(other)
    single = tmp_path / "single.npy"
    np.save(single, np.ones(3))
    with pytest.raises(ValueError, match="not an .npz archive"):
        load_into_fresh(single)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a readable"):
        load_into_fresh(text)
    with pytest.raises(FileNotFoundError):
        load_into_fresh(tmp_path / "missing.npz")


def test_pickled_content_is_refused(saved, tmp_path):
    arrays, extra = checkpoint.read_npz(saved)
    arrays["extra/evil"] = np.array([object()], dtype=object)
    bad = tmp_path / "pickled.npz"
    np.savez(bad, **{checkpoint.MAGIC: np.array(checkpoint.VERSION), **arrays})
    with pytest.raises(ValueError, match="pickle"):
        load_into_fresh(bad)


def test_other_version(saved, tmp_path):
    arrays, _ = checkpoint.read_npz(saved)
    bad = tmp_path / "v2.npz"
    np.savez(bad, **{checkpoint.MAGIC: np.array(2), **arrays})
    with pytest.raises(ValueError, match="version 2"):
        load_into_fresh(bad)


def test_mismatched_model_shape(saved):
    with pytest.raises(ValueError, match=r"shape \(12, 20\).*shape \(16, 20\)"):
        load_into_fresh(saved, hidden=16)


def test_mismatched_master_format(saved):
    with pytest.raises(ValueError, match="LNSFormat"):
        load_into_fresh(saved, master=F8)


def test_mismatched_optimizer_leaves_the_model_alone(saved):
    """The model part of the file fits; the optimizer part does not: nothing is loaded."""
    with pytest.raises(ValueError, match="Madam, not SGD|for 'Madam'"):
        load_into_fresh(saved, kind="sgd")
    with pytest.raises(ValueError, match="rounding"):
        load_into_fresh(saved, rounding="stochastic")


def test_corrupt_optimizer_codes(saved, tmp_path):
    arrays, extra = checkpoint.read_npz(saved)
    key = "optimizer/param0.v.codes"
    arrays[key] = arrays[key].astype(np.uint64)
    bad = tmp_path / "codes.npz"
    checkpoint.write_npz(bad, arrays, extra)
    with pytest.raises(ValueError, match="param0.v.codes"):
        load_into_fresh(bad)
    arrays[key] = np.full(arrays[key].shape, 2 ** 30, np.uint32)  # wider than 24 bits
    checkpoint.write_npz(bad, arrays, extra)
    with pytest.raises(ValueError, match="wider than 24 bits"):
        load_into_fresh(bad)


def test_missing_optimizer_section(tmp_path):
    path = tmp_path / "model_only.npz"
    model, opt, schedule = make()
    checkpoint.save(path, model)
    checkpoint.load(path, make()[0])  # a model alone loads
    with pytest.raises(ValueError, match="no optimizer state"):
        load_into_fresh(path)
