"""Training a model on a data set: seeded batches, metrics per epoch, and runs that survive Ctrl-C.

The loop is the same for the LNS engine and the float32 baseline: both see
the same initial weights (the baseline decodes the LNS model's master
copies) and the same batches (lnsnet.data.iterate_batches orders an epoch by
(seed, epoch) alone).  A run is a position (epoch, batch) plus the engine's
state, so a checkpoint taken anywhere, Ctrl-C included, resumes to the same
final weights as a run that never stopped.
"""
from __future__ import annotations

import json
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from lnsnet.data import batch_count, iterate_batches
from lnsnet.optim.schedule import half_cosine

MODELS = ("mlp", "lenet")
OPTIMIZERS = ("madam", "sgd", "adam")
# constant: --lr throughout; cosine: half a cosine from --lr down to 0 over the whole run.
SCHEDULES = ("constant", "cosine")
# The paper's Madam lr; usual values for the additive two (SGD with momentum 0.9).
DEFAULT_LR = {"madam": 0.01, "sgd": 0.05, "adam": 0.001}
SGD_MOMENTUM = 0.9
# Master weights keep at least this many octaves of dynamic range below their
# largest value (Madam pins that value near 3 x the initial RMS); the rest of
# the bits go to precision, since Madam's step is lr * gamma / ln 2 exponent
# units: 16 bits -> gamma 4096 (59 units per unit g*), 12 -> 256 (3.7),
# 10 -> 64 (0.92).  A wider range would round small updates away.
MASTER_OCTAVES = 7
EVAL_BATCH = 1000


@dataclass
class TrainConfig:
    dataset: str = "mnist"
    model: str = "mlp"
    optimizer: str = "madam"
    bits: int = 8
    gamma: int = 8
    update_bits: int = 16
    accumulate: str = "linear"
    epochs: int = 3
    batch_size: int = 64
    lr: float | None = None
    schedule: str = "constant"
    seed: int = 0
    float32: bool = False
    train_limit: int | None = None
    test_limit: int | None = None

    @property
    def learning_rate(self) -> float:
        return DEFAULT_LR[self.optimizer] if self.lr is None else self.lr

    def lr_at(self, step: int, total_steps: int) -> float:
        """The lr for step `step` (from 0) of a run of total_steps."""
        if self.schedule == "cosine":
            return half_cosine(step, total_steps, self.learning_rate)
        return self.learning_rate


def master_gamma(update_bits: int, forward_gamma: int) -> int:
    """The finest gamma (at least the forward one) that keeps MASTER_OCTAVES of range in update_bits."""
    span = (1 << (update_bits - 1)) - 2
    gamma = forward_gamma
    while span / (2 * gamma) >= MASTER_OCTAVES:
        gamma *= 2
    return gamma


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float
    seconds: float


@dataclass
class Position:
    """Where a run is: the next batch to train is batch `batch` of epoch `epoch` (both from 0)."""
    epoch: int = 0
    batch: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0


class Interrupted(Exception):
    """Training stopped on Ctrl-C (or SIGTERM) after saving where it was."""

    def __init__(self, position: Position, path):
        super().__init__(f"interrupted at epoch {position.epoch + 1}, batch {position.batch}; "
                         f"saved to {path}" if path else "interrupted")
        self.position, self.path = position, path


class Diverged(Exception):
    """Training stopped because the run diverged; the last checkpoint written is the last good one."""


def evaluate(engine, images, labels, batch_size: int = EVAL_BATCH) -> float:
    """Accuracy of the engine's predictions, in batches."""
    if len(labels) == 0:
        return float("nan")
    correct = 0
    for lo in range(0, len(labels), batch_size):
        correct += int((engine.predict(images[lo:lo + batch_size]) == labels[lo:lo + batch_size]).sum())
    return correct / len(labels)


class Trainer:
    """Runs epochs of an engine over a data set, keeping metrics and a resumable position."""

    def __init__(self, config: TrainConfig, engine, dataset, *, progress: bool = True,
                 checkpoint_path=None, interrupt_path=None):
        """checkpoint_path: saved after every epoch; interrupt_path: saved on Ctrl-C
        (default checkpoint_path)."""
        self.config, self.engine, self.dataset = config, engine, dataset
        self.progress = progress
        self.checkpoint_path = checkpoint_path
        self.interrupt_path = interrupt_path or checkpoint_path
        self.position = Position()
        self.history: list[EpochMetrics] = []

    # ---- resumable state -----------------------------------------------------
    def run_state(self) -> dict:
        return {"config": asdict(self.config), "position": asdict(self.position),
                "history": [asdict(m) for m in self.history]}

    def restore_run_state(self, state: dict) -> None:
        self.position = Position(**state["position"])
        self.history = [EpochMetrics(**m) for m in state["history"]]

    def save(self, path) -> None:
        self.engine.save(path, json.dumps(self.run_state()))

    # ---- the loop ------------------------------------------------------------
    def run(self) -> list[EpochMetrics]:
        try:
            with _signals_held() as pending:
                while self.position.epoch < self.config.epochs:
                    self._train_epoch(pending)
                    if pending:
                        raise KeyboardInterrupt
                    self._finish_epoch()
                    if pending:
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            if self.interrupt_path is not None:
                self.save(self.interrupt_path)
            raise Interrupted(self.position, self.interrupt_path) from None
        return self.history

    def _finish_epoch(self) -> None:
        cfg, data, pos = self.config, self.dataset, self.position
        test_acc = evaluate(self.engine, data.test_images, data.test_labels)
        self.history.append(EpochMetrics(
            epoch=pos.epoch + 1, train_loss=pos.loss_sum / max(pos.seen, 1),
            train_accuracy=pos.correct / max(pos.seen, 1), test_accuracy=test_acc,
            seconds=pos.seconds))
        if self.progress:
            m = self.history[-1]
            print(f"epoch {m.epoch}/{cfg.epochs}: loss {m.train_loss:.4f}  train acc "
                  f"{100 * m.train_accuracy:.2f}%  test acc {100 * m.test_accuracy:.2f}%  "
                  f"({m.seconds:.1f} s)", flush=True)
        self.position = Position(epoch=pos.epoch + 1)
        if self.checkpoint_path is not None:
            self.save(self.checkpoint_path)

    def _train_epoch(self, pending: list) -> None:
        cfg, data, pos = self.config, self.dataset, self.position
        total = batch_count(len(data.train_labels), cfg.batch_size)
        batches = iterate_batches(data.train_images, data.train_labels, cfg.batch_size,
                                  seed=cfg.seed, epoch=pos.epoch, start_batch=pos.batch)
        bar = _progress_bar(total, pos.batch, f"epoch {pos.epoch + 1}/{cfg.epochs}", self.progress)
        try:
            for images, labels in batches:
                start = time.perf_counter()
                # The lr follows from the position alone, so a resumed run
                # steps with the same rates as one that never stopped.
                if cfg.schedule != "constant":
                    self.engine.set_lr(cfg.lr_at(pos.epoch * total + pos.batch, cfg.epochs * total))
                loss, correct = self.engine.train_batch(images, labels)
                self._check_health(loss)
                # The batch counts as done only once its step has been applied,
                # so an interruption never loses or repeats a step.
                pos.seconds += time.perf_counter() - start
                pos.batch += 1
                pos.loss_sum += loss * len(labels)
                pos.correct += correct
                pos.seen += len(labels)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{pos.loss_sum / pos.seen:.3f}",
                                    acc=f"{100 * pos.correct / pos.seen:.1f}%",
                                    img_s=f"{pos.seen / max(pos.seconds, 1e-9):.0f}")
                if pending:
                    return
        finally:
            if bar is not None:
                bar.close()


    def _check_health(self, loss: float) -> None:
        pos = self.position
        where = f"epoch {pos.epoch + 1}, batch {pos.batch}"
        if not math.isfinite(loss):
            raise Diverged(f"the loss is no longer finite ({loss}) at {where}")
        saturated = self.engine.saturated()
        if saturated:
            raise Diverged(f"a weight sits at the saturation bound at {where}: {saturated}")


@contextmanager
def _signals_held():
    """Hold SIGINT and SIGTERM until the step in progress is done.

    A signal arriving mid-step would leave some weights updated and others
    not, and no checkpoint could then resume exactly.  The handlers only note
    the signal; the loop stops at the next batch boundary.  Signal handlers
    can only be set from the main thread; elsewhere nothing is held.
    """
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum)) for sig in held}
    try:
        yield pending
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _progress_bar(total: int, done: int, description: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=done, desc=description, unit="batch", leave=False,
                dynamic_ncols=True)


def metrics_record(config: TrainConfig, history: list[EpochMetrics], **extra) -> dict:
    """The --metrics record: the config, one entry per epoch, the final test accuracy."""
    record = {"config": asdict(config), "epochs": [asdict(m) for m in history],
              "final_test_accuracy": history[-1].test_accuracy if history else None}
    record.update(extra)
    return record
