"""A diverging run stops with a clear message (lnsnet.train.Diverged) and keeps its last good checkpoint.

Trainer.run raises Diverged when the decoded loss is no longer finite, or
when a weight has blown up to the saturation bound (the engine's largest exponent).  The
checkpoint written at the end of the last good epoch stays as it was, byte
for byte, and resuming from it gives that epoch's weights.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from lnsnet.cli import main
from lnsnet.data import load_dataset
from lnsnet.engines import make_engine
from lnsnet.train import Diverged, TrainConfig, Trainer

SMALL = dict(dataset="digits", train_limit=256, test_limit=64, batch_size=32, epochs=1)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", train_limit=SMALL["train_limit"], test_limit=SMALL["test_limit"])


def first_epoch(config: TrainConfig, digits, path):
    """Train one good epoch, checkpointed to path; returns the engine."""
    engine = make_engine(config)
    Trainer(config, engine, digits, progress=False, checkpoint_path=path).run()
    return engine


def resumed_trainer(config: TrainConfig, digits, path) -> Trainer:
    engine = make_engine(config)
    trainer = Trainer(config, engine, digits, progress=False, checkpoint_path=path)
    trainer.restore_run_state(json.loads(engine.load(path)))
    return trainer


def master_weights(engine) -> list[np.ndarray]:
    if hasattr(engine, "model"):
        return [a for p in engine.model.parameters() for a in (p.sign.copy(), p.exp.copy())]
    return [w.copy() for w in engine.optimizer.weights]


def assert_checkpoint_is(path, good_bytes: bytes, weights, config, digits) -> None:
    """path still holds the good epoch: the same bytes, which resume to the same weights at epoch 2."""
    assert path.read_bytes() == good_bytes
    trainer = resumed_trainer(config, digits, path)
    assert (trainer.position.epoch, trainer.position.batch) == (1, 0)
    for got, want in zip(master_weights(trainer.engine), weights, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_loss_that_is_no_longer_finite_stops_the_run(digits, tmp_path):
    """The float32 baseline with SGD at lr 1e10 overflows to inf and NaN within a few steps."""
    path = tmp_path / "run.npz"
    config = TrainConfig(model="mlp", optimizer="sgd", float32=True, lr=0.05, **SMALL)
    weights = master_weights(first_epoch(config, digits, path))
    good = path.read_bytes()

    exploding = dataclasses.replace(config, lr=1e10, epochs=2)
    with np.errstate(over="ignore", invalid="ignore"), \
            pytest.raises(Diverged, match=r"loss is no longer finite \(nan\) at epoch 2, batch \d"):
        resumed_trainer(exploding, digits, path).run()
    assert_checkpoint_is(path, good, weights, config, digits)


def test_a_weight_at_the_saturation_bound_stops_the_run(digits, tmp_path):
    """An LNS run whose weights have blown up to the largest exponent their format holds
    (simulated from batch 3 of epoch 2 on) stops there, although its decoded loss stays finite."""
    path = tmp_path / "run.npz"
    config = TrainConfig(model="mlp", optimizer="sgd", **SMALL)
    weights = master_weights(first_epoch(config, digits, path))
    good = path.read_bytes()

    trainer = resumed_trainer(dataclasses.replace(config, epochs=2), digits, path)
    engine, real_step, steps = trainer.engine, trainer.engine.train_batch, []

    def blowing_up_step(images, labels):
        loss, correct = real_step(images, labels)
        steps.append(loss)
        if len(steps) >= 3:
            last = list(engine.model.parameters())[-1]
            exp = last.exp.copy()
            exp.flat[0] = last.fmt.limit
            last.set_master(last.sign, exp, last.fmt)
        return loss, correct

    engine.train_batch = blowing_up_step
    with pytest.raises(Diverged, match=r"a weight sits at the saturation bound at epoch 2, batch 2: "
                                       r"5\.bias reached the largest exponent, \+\d+"):
        trainer.run()
    assert np.isfinite(steps).all()
    assert_checkpoint_is(path, good, weights, config, digits)


def test_lnsnet_train_says_the_run_diverged_and_where_the_good_checkpoint_is(digits, tmp_path,
                                                                          monkeypatch, capsys):
    monkeypatch.setenv("LNSNET_DATA", str(tmp_path / "data"))
    path = tmp_path / "run.npz"
    options = ["--dataset", "digits", "--train-limit", "256", "--test-limit", "64", "--batch-size", "32",
               "--quiet", "--float32", "--optimizer", "sgd", "--save", str(path)]
    assert main(["train", *options, "--epochs", "1"]) == 0
    good = path.read_bytes()
    capsys.readouterr()
    with np.errstate(over="ignore", invalid="ignore"):
        status = main(["train", *options, "--epochs", "2", "--lr", "1e10", "--resume", str(path)])
    assert status == 1
    err = capsys.readouterr().err
    assert "the run diverged: the loss is no longer finite" in err
    assert f"the last good checkpoint is {path}" in err
    assert path.read_bytes() == good
