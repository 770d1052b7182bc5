"""The training loop and `lnsnet train` / `lnsnet eval`: smoke accuracy, interruption and resume, bad options."""
from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from lnsnet.cli import main
from lnsnet.data import load_dataset
from lnsnet.engines import make_engine
from lnsnet.optim.schedule import half_cosine
from lnsnet.train import Interrupted, TrainConfig, Trainer, master_gamma

SMALL = dict(dataset="digits", train_limit=640, test_limit=320, batch_size=32)


@pytest.fixture(scope="module")
def small_digits():
    return load_dataset("digits", train_limit=SMALL["train_limit"], test_limit=SMALL["test_limit"])


def master_codes(engine):
    return [(p.sign.copy(), p.exp.copy()) for p in engine.model.parameters()]


def test_master_gamma_keeps_seven_octaves():
    assert master_gamma(16, 8) == 4096   # 32766 / 4096 = 8.0 octaves
    assert master_gamma(12, 8) == 256    # 2046 / 256 = 7.99
    assert master_gamma(10, 8) == 64     # 510 / 64 = 7.97
    assert master_gamma(8, 8) == 16      # 126 / 16 = 7.9
    assert master_gamma(6, 8) == 8       # never coarser than the forward format


def test_two_epochs_on_small_digits_learn(small_digits):
    # 640 images, 2 epochs: chance is 10%; the mlp with LNS-Madam 8-bit gets
    # well above 50% here (measured ~80%), so 50% is a safe floor that still
    # fails if learning is broken.
    config = TrainConfig(model="mlp", optimizer="madam", epochs=2, **SMALL)
    history = Trainer(config, make_engine(config), small_digits, progress=False).run()
    assert len(history) == 2
    assert history[-1].train_loss < history[0].train_loss
    assert history[-1].test_accuracy > 0.5


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_interrupt_and_resume_match_an_uninterrupted_run(small_digits, tmp_path, schedule):
    config = TrainConfig(model="mlp", optimizer="madam", epochs=2, schedule=schedule, **SMALL)
    straight = make_engine(config)
    Trainer(config, straight, small_digits, progress=False).run()

    engine = make_engine(config)
    calls = {"n": 0}
    real_step = engine.train_batch

    def interrupting_step(images, labels):
        calls["n"] += 1
        if calls["n"] == 27:  # mid second epoch (20 batches per epoch)
            raise KeyboardInterrupt
        return real_step(images, labels)

    engine.train_batch = interrupting_step
    path = tmp_path / "run.npz"
    with pytest.raises(Interrupted) as stop:
        Trainer(config, engine, small_digits, progress=False, checkpoint_path=path).run()
    assert (stop.value.position.epoch, stop.value.position.batch) == (1, 6)

    resumed = make_engine(config)
    trainer = Trainer(config, resumed, small_digits, progress=False, checkpoint_path=path)
    trainer.restore_run_state(json.loads(resumed.load(path)))
    history = trainer.run()
    assert [m.epoch for m in history] == [1, 2]
    for (s1, x1), (s2, x2) in zip(master_codes(straight), master_codes(resumed)):
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_array_equal(x1, x2)


@pytest.mark.parametrize("float32", [False, True])
def test_cosine_schedule_sets_every_steps_lr(small_digits, float32):
    config = TrainConfig(model="mlp", optimizer="adam", epochs=2, schedule="cosine", float32=float32,
                         **SMALL)
    engine = make_engine(config)
    rates = []
    real_set_lr = engine.set_lr

    def recording_set_lr(lr):
        rates.append(lr)
        real_set_lr(lr)

    engine.set_lr = recording_set_lr
    Trainer(config, engine, small_digits, progress=False).run()
    steps = 2 * 20  # 640 images in batches of 32, two epochs
    assert rates == [half_cosine(i, steps, config.learning_rate) for i in range(steps)]
    assert rates[0] == config.learning_rate and 0 < rates[-1] < 0.01 * config.learning_rate
    used = engine.optimizer.hyper["lr"] if float32 else engine.optimizer.param_groups[0]["lr"]
    assert used == rates[-1]


def test_float32_baseline_learns_and_resumes(small_digits, tmp_path):
    config = TrainConfig(model="mlp", optimizer="sgd", float32=True, epochs=1, **SMALL)
    engine = make_engine(config)
    path = tmp_path / "f32.npz"
    history = Trainer(config, engine, small_digits, progress=False, checkpoint_path=path).run()
    assert history[-1].test_accuracy > 0.5
    again = make_engine(config)
    again.load(path)
    for w1, w2 in zip(engine.optimizer.weights, again.optimizer.weights):
        np.testing.assert_array_equal(w1, w2)


@pytest.mark.parametrize("argv, message", [
    (["train", "--bits", "1"], "out of range"),
    (["train", "--gamma", "6"], "not a power of two"),
    (["train", "--optimizer", "rmsprop"], "invalid choice"),
    (["train", "--epochs", "0"], "out of range"),
    (["train", "--lr", "nan"], "positive finite"),
    (["train", "--dataset", "cifar"], "invalid choice"),
    (["train", "--schedule", "linear"], "invalid choice"),
])
def test_cli_rejects_bad_options(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_rejects_update_bits_below_bits(capsys):
    assert main(["train", "--bits", "8", "--update-bits", "6", "--dataset", "digits"]) == 1
    assert "--update-bits 6 is below --bits 8" in capsys.readouterr().err


def test_cli_train_then_eval(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LNSNET_DATA", str(tmp_path / "cache"))
    save, metrics, plot = tmp_path / "m.npz", tmp_path / "m.json", tmp_path / "m.png"
    status = main(["train", "--dataset", "digits", "--train-limit", "256", "--test-limit", "128",
                   "--epochs", "1", "--batch-size", "64", "--quiet", "--save", str(save),
                   "--metrics", str(metrics), "--plot", str(plot)])
    assert status == 0
    out = capsys.readouterr().out
    assert "test accuracy:" in out
    record = json.loads(metrics.read_text())
    assert len(record["epochs"]) == 1 and 0 <= record["final_test_accuracy"] <= 1
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["eval", "--checkpoint", str(save), "--test-limit", "128"]) == 0
    reported = capsys.readouterr().out
    assert f"{100 * record['final_test_accuracy']:.2f}%" in reported


def test_default_dataset_falls_back_to_digits_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LNSNET_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("lnsnet.train_cli.load_dataset",
                        functools.partial(load_dataset, fetch=_offline_fetch))
    status = main(["train", "--train-limit", "128", "--test-limit", "64", "--epochs", "1", "--quiet"])
    assert status == 0
    captured = capsys.readouterr()
    assert "mnist is not available" in captured.err
    assert "training on the synthetic 'digits' set instead" in captured.err


def _offline_fetch(url, dest, timeout):
    raise OSError(f"offline: cannot reach {url}")
