"""Learning-rate schedules: each call to step() sets every group's lr for the next step.

The lr is a float hyperparameter; setting it makes the optimizer rebuild the
integer constants its step uses (Madam's step factor, SGD's and Adam's LNS
lr), the way new ROM contents would be loaded between steps.  Call
`schedule.step()` after `optimizer.step()`.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np


class Schedule(ABC):
    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.steps = 0

    @abstractmethod
    def lr_at(self, steps: int, base_lr: float) -> float:
        """The lr after `steps` calls to step(), for a group that started at base_lr."""

    def step(self) -> None:
        self.steps += 1
        self._apply()

    def _apply(self) -> None:
        for i, (group, base) in enumerate(zip(self.optimizer.param_groups, self.base_lrs)):
            lr = self.lr_at(self.steps, base)
            if lr != group["lr"]:
                self.optimizer.set_lr(lr, group=i)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"type": np.array(type(self).__name__), "steps": np.array(self.steps, np.int64),
                "base_lrs": np.array(self.base_lrs, np.float64)}

    def validate_state_dict(self, sd: dict) -> dict:
        """Check sd against this schedule, changing nothing; returns what install_state takes."""
        name = type(self).__name__
        expected = self.state_dict()
        if set(sd) != set(expected):
            raise ValueError(f"{name} state has keys {sorted(sd)}, expected {sorted(expected)}")
        if str(np.asarray(sd["type"])) != name:
            raise ValueError(f"the schedule state is for {str(np.asarray(sd['type']))!r}, not {name}")
        for key in ("steps", "base_lrs"):
            got, ref = np.asarray(sd[key]), expected[key]
            if got.shape != ref.shape or got.dtype != ref.dtype:
                raise ValueError(f"{name} state: {key} is {got.dtype} of shape {got.shape}, "
                                 f"expected {ref.dtype} of shape {ref.shape}")
        if int(sd["steps"]) < 0 or not np.all(np.asarray(sd["base_lrs"]) >= 0):
            raise ValueError(f"{name} state: negative steps or learning rate")
        parsed = {"steps": int(sd["steps"]), "base_lrs": [float(v) for v in sd["base_lrs"]]}
        for group, base in zip(self.optimizer.param_groups, parsed["base_lrs"]):
            self.optimizer.check_hyper({**group, "lr": self.lr_at(parsed["steps"], base)})
        return parsed

    def install_state(self, parsed: dict) -> None:
        self.steps = parsed["steps"]
        self.base_lrs = parsed["base_lrs"]
        self._apply()

    def load_state_dict(self, sd: dict) -> None:
        self.install_state(self.validate_state_dict(sd))


class StepLR(Schedule):
    """lr = base_lr * factor**(steps // step_size): drops by `factor` every step_size steps."""

    def __init__(self, optimizer, step_size: int, factor: float = 0.1):
        if step_size < 1 or not factor > 0:
            raise ValueError(f"StepLR: need step_size >= 1 and factor > 0, got {step_size} and {factor}")
        super().__init__(optimizer)
        self.step_size = step_size
        self.factor = factor

    def lr_at(self, steps: int, base_lr: float) -> float:
        return base_lr * self.factor ** (steps // self.step_size)


class CosineLR(Schedule):
    """Half a cosine from base_lr down to min_lr over total_steps, then min_lr."""

    def __init__(self, optimizer, total_steps: int, min_lr: float = 0.0):
        if total_steps < 1 or not min_lr >= 0:
            raise ValueError(f"CosineLR: need total_steps >= 1 and min_lr >= 0, got {total_steps} and {min_lr}")
        super().__init__(optimizer)
        self.total_steps = total_steps
        self.min_lr = min_lr

    def lr_at(self, steps: int, base_lr: float) -> float:
        return half_cosine(steps, self.total_steps, base_lr, self.min_lr)


def half_cosine(steps: int, total_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """The cosine schedule's lr after `steps` of `total_steps` (min_lr from then on)."""
    progress = min(steps, total_steps) / total_steps
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
