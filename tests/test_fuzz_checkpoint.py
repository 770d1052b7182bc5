"""Fuzzing checkpoint loading: whatever the file holds, loading either succeeds or
raises a clean ValueError / OSError that names the file, and a failed load
leaves the model, optimizer and schedule bit-for-bit as they were.

The files are a real checkpoint cut short, with bits flipped or bytes
overwritten, with entries replaced by arrays of other dtypes and shapes
(Python objects included), removed or added, and foreign .npz archives.
Loading never unpickles: numpy.load is always called with allow_pickle=False,
and a pickle whose loading would run code is refused without running it.

Fuzz cases: 6 properties, 1,500 examples in all (the max_examples below).
"""
from __future__ import annotations

import io
import os
import re
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lnsnet import checkpoint, engines, nn, optim
from lnsnet.engines import make_engine
from lnsnet.format import LNSFormat
from lnsnet.ops import cross_entropy
from lnsnet.tensor import tensor
from lnsnet.train import TrainConfig

MASTER = LNSFormat(16, 1024)
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                      HealthCheck.too_slow])


def make_run():
    """A tiny model, Madam with stochastic rounding (its generator is saved too) and a schedule."""
    model = nn.Sequential(nn.Linear(6, 4, seed=1, master=MASTER), nn.ReLU(),
                          nn.Linear(4, 3, seed=2, master=MASTER))
    opt = optim.Madam(model.parameters(), lr=0.02, rounding="stochastic", seed=3)
    return model, opt, optim.CosineLR(opt, total_steps=10, min_lr=1e-4)


def train_step(model, opt, schedule, seed: int) -> None:
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(8, 6))
    opt.zero_grad()
    cross_entropy(model(tensor(inputs)), rng.integers(0, 3, 8)).backward()
    opt.step()
    schedule.step()


def snapshot(model, opt, schedule) -> dict:
    """Everything a run's future depends on, including the master weights as held in memory."""
    state = {**{f"m/{k}": v for k, v in model.state_dict().items()},
             **{f"o/{k}": v for k, v in opt.state_dict().items()},
             **{f"s/{k}": v for k, v in schedule.state_dict().items()}}
    for i, p in enumerate(model.parameters()):
        state[f"p{i}/sign"], state[f"p{i}/exp"] = p.sign.copy(), p.exp.copy()
    return state


def assert_same(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key in before:
        assert before[key].dtype == after[key].dtype and before[key].shape == after[key].shape, key
        assert np.array_equal(before[key], after[key]), key


@pytest.fixture(scope="module", autouse=True)
def numpy_kernels():
    """This module fuzzes files, not kernels: the NumPy references keep each training step
    a few milliseconds, where the C kernels' thread start-up can cost far more on a busy
    machine."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LNSNET_NATIVE", "0")
        yield


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    """The bytes and arrays of a valid checkpoint of a run two steps in."""
    path = tmp_path_factory.mktemp("good") / "good.npz"
    run = make_run()
    for seed in range(2):
        train_step(*run, seed=seed)
    checkpoint.save(path, *run, extra={"note": "two steps"})
    arrays, extra = checkpoint.read_npz(path)
    return path.read_bytes(), arrays, extra


@pytest.fixture(scope="module")
def target():
    """The run every fuzzed file is loaded into: one step in, so that it differs from the file."""
    run = make_run()
    train_step(*run, seed=9)
    return run


def check_load(path, run) -> Exception | None:
    """Load path into run.  On failure: a ValueError/OSError naming the file, and run unchanged.
    On success: the run trains on.  Returns the error, or None when the file loaded."""
    before = snapshot(*run)
    try:
        checkpoint.load(path, *run)
    except (ValueError, OSError) as err:
        assert os.fspath(path) in str(err), err
        assert_same(before, snapshot(*run))
        return err
    train_step(*run, seed=11)
    return None


def outcome(error: Exception | None) -> str:
    return "loaded" if error is None else "refused"


# ---- damaged bytes -----------------------------------------------------------------------

@settings(FUZZ, max_examples=250)
@given(data=st.data())
def test_truncated_files_are_refused(tmp_path, good_file, target, data):
    raw = good_file[0]
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    path = tmp_path / "cut.npz"
    path.write_bytes(raw[:cut])
    assert check_load(path, target) is not None


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_bit_flips(tmp_path, good_file, target, data):
    raw = bytearray(good_file[0])
    bits = data.draw(st.lists(st.integers(0, 8 * len(raw) - 1), min_size=1, max_size=8), label="bits")
    for bit in bits:
        raw[bit // 8] ^= 1 << (bit % 8)
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(raw))
    event(outcome(check_load(path, target)))


@settings(FUZZ, max_examples=250)
@given(data=st.data())
def test_overwritten_bytes(tmp_path, good_file, target, data):
    raw = bytearray(good_file[0])
    start = data.draw(st.integers(0, len(raw) - 1), label="start")
    patch = data.draw(st.binary(min_size=1, max_size=64), label="patch")
    raw[start:start + len(patch)] = patch
    path = tmp_path / "patched.npz"
    path.write_bytes(bytes(raw))
    event(outcome(check_load(path, target)))


# ---- well-formed archives with the wrong content ---------------------------------------------

DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
          np.float32, np.float64, np.complex128, np.bool_, np.dtype("U5"), np.dtype("S5")]


def arrays_of(shape=None):
    """Arrays of any dtype (extreme values included) and of a small shape, or of `shape`."""
    shapes = st.just(shape) if shape is not None else hnp.array_shapes(min_dims=0, max_dims=3,
                                                                      min_side=0, max_side=4)
    plain = st.sampled_from(DTYPES).flatmap(lambda dtype: hnp.arrays(dtype, shapes))
    objects = shapes.map(lambda s: np.full(s, None, dtype=object))
    return st.one_of(plain, plain, plain, objects)


def edited(arrays: dict, data) -> dict:
    """arrays with a few entries replaced, removed or added."""
    arrays = dict(arrays)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        key = data.draw(st.sampled_from(sorted(arrays)), label="key")
        action = data.draw(st.sampled_from(["same shape", "any shape", "remove", "add"]), label="action")
        if action == "same shape":
            arrays[key] = data.draw(arrays_of(np.shape(arrays[key])), label="value")
        elif action == "any shape":
            arrays[key] = data.draw(arrays_of(), label="value")
        elif action == "remove" and len(arrays) > 1:
            del arrays[key]
        else:
            section = data.draw(st.sampled_from(["model", "optimizer", "schedule", "extra", "other"]))
            arrays[f"{section}/{data.draw(st.text('abc.0', min_size=1, max_size=6))}"] = data.draw(arrays_of())
    return arrays


def write_archive(path, arrays: dict, compressed: bool) -> None:
    # numpy.savez pickles object arrays: these are the files an attacker could send.
    (np.savez_compressed if compressed else np.savez)(path, **arrays)


@settings(FUZZ, max_examples=400)
@given(data=st.data(), compressed=st.booleans())
def test_edited_entries(tmp_path, good_file, target, data, compressed):
    _, arrays, extra = good_file
    content = {checkpoint.MAGIC: np.array(checkpoint.VERSION, np.int64), **arrays,
               **{f"extra/{k}": np.array(v) for k, v in extra.items()}}
    path = tmp_path / "edited.npz"
    write_archive(path, edited(content, data), compressed)
    event(outcome(check_load(path, target)))


@settings(FUZZ, max_examples=200)
@given(data=st.data(), with_magic=st.booleans())
def test_foreign_archives(tmp_path, target, data, with_magic):
    names = st.text("abcdefgh/._0123", min_size=1, max_size=12)
    content = data.draw(st.dictionaries(names, arrays_of(), max_size=5), label="content")
    if with_magic:
        content[checkpoint.MAGIC] = np.array(checkpoint.VERSION, np.int64)
    path = tmp_path / "foreign.npz"
    write_archive(path, content, compressed=False)
    assert check_load(path, target) is not None


@settings(FUZZ, max_examples=100)
@given(header=st.fixed_dictionaries({
    "descr": st.sampled_from(["|u1", "<i8", "<f8", "|O"]),
    "fortran_order": st.booleans(),
    "shape": st.lists(st.integers(0, 2 ** 40), max_size=3).map(tuple)}),
    held=st.integers(0, 256))
def test_lying_npy_headers_allocate_nothing(tmp_path, good_file, target, header, held):
    """A member whose header declares a huge (or any wrong) size is refused before numpy
    reserves memory for it: a MemoryError would escape the clean-error rule."""
    _, arrays, extra = good_file
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    path = tmp_path / "liar.npz"
    honest = {key: value for key, value in arrays.items() if key != "model/0.weight.codes"}
    np.savez(path, **{checkpoint.MAGIC: np.array(checkpoint.VERSION, np.int64), **honest})
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("model/0.weight.codes.npy", buffer.getvalue() + bytes(held))
    assert check_load(path, target) is not None


@pytest.mark.parametrize("key, value, message", [
    # a scale far outside the format used to wrap every exponent of the weight silently
    ("model/0.weight.scale", np.array(2 ** 40), r"0.weight.scale must be one integer within"),
    ("model/0.weight.scale", np.array([3, 4]), r"0.weight.scale must be one integer"),
    ("model/0.weight.format", np.array([16]), r"0.weight.format should be \(bits, gamma\)"),
    ("model/0.weight.format", np.array([16 + 0j, 1024]), r"0.weight.format must be an integer"),
    ("model/0.weight.format", np.array([16, 1000]), r"gamma=1000 must be a power of two"),
    ("model/0.weight.codes", np.zeros((4, 6), np.uint8), r"codes are uint8"),
    ("optimizer/group0.lr", np.array(float("nan")), r"lr"),
])
def test_corrupt_fields_are_named(tmp_path, good_file, target, key, value, message):
    _, arrays, extra = good_file
    path = tmp_path / "corrupt.npz"
    checkpoint.write_npz(path, {**arrays, key: value}, extra)
    assert re.search(message, str(check_load(path, target)))


@pytest.mark.parametrize("edit", ["drop steps", "negative steps", "weight shape", "weight as ints",
                                  "state shape"])
def test_float32_baseline_checkpoint_mismatches_change_nothing(tmp_path, edit):
    """The float32 baseline's checkpoints are checked whole before anything is adopted too."""
    config = TrainConfig(model="mlp", optimizer="adam", float32=True)
    path = tmp_path / "f32.npz"
    make_engine(config).save(path, "{}")
    arrays, extra = checkpoint.read_npz(path)
    weight = next(k for k in arrays if k.startswith("weight/"))
    if edit == "drop steps":
        del arrays["steps"]
    elif edit == "negative steps":
        arrays["steps"] = np.array(-1)
    elif edit == "weight shape":
        arrays[weight] = arrays[weight][:3]
    elif edit == "weight as ints":
        arrays[weight] = arrays[weight].astype(np.int64)
    else:
        arrays["v/0"] = np.zeros(3)
    checkpoint.write_npz(path, arrays, extra)
    engine = make_engine(config)
    engine.optimizer.steps = 5
    before = [w.copy() for w in (*engine.optimizer.weights, *engine.optimizer.m, *engine.optimizer.v)]
    with pytest.raises(ValueError, match=str(path)):
        engine.load(path)
    after = (*engine.optimizer.weights, *engine.optimizer.m, *engine.optimizer.v)
    assert engine.optimizer.steps == 5
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


# ---- a pickle is never loaded ------------------------------------------------------------------

class _RunsCode:
    """Unpickling this calls _mark: what a malicious checkpoint would do."""
    ran = False

    def __reduce__(self):
        return (_mark, ())


def _mark():
    _RunsCode.ran = True


def test_loading_never_unpickles(tmp_path, good_file, target, monkeypatch):
    _, arrays, extra = good_file
    calls = []
    real_load = np.load

    def spying_load(*args, **kwargs):
        calls.append(kwargs.get("allow_pickle", "default"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", spying_load)
    good = tmp_path / "good.npz"
    checkpoint.write_npz(good, arrays, extra)
    checkpoint.load(good, *make_run())
    for key in ("model/0.weight.codes", "optimizer/rng", "extra/note"):
        evil = tmp_path / f"evil{len(calls)}.npz"
        content = {checkpoint.MAGIC: np.array(checkpoint.VERSION, np.int64), **arrays,
                   key: np.array([_RunsCode()], dtype=object)}
        np.savez(evil, **content)
        with pytest.raises(ValueError, match="pickled"):
            checkpoint.load(evil, *target)
        with pytest.raises(ValueError, match="pickled"):
            engines.read_run_state(evil)
    assert not _RunsCode.ran
    assert calls and all(flag is False for flag in calls)
