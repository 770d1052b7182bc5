"""How much of each update survives: the update an optimizer meant against what its LNS weights did.

For every weight that has a gradient, per step:

- the ideal update is the float64 change the optimizer means, computed by
  its float reference (lnsnet.optim.reference) from the decoded weights,
  gradient and optimizer state just before the step
  (`Optimizer.ideal_update`);
- the realised update is the change of the decoded master weight over the
  step (the master copy is what the optimizer writes; the forward copy is a
  rounding of it).

The ideal update uses the optimizer's nominal hyperparameters, so the
rounding of its constants counts as its error too (at the default state
format beta = 0.999 becomes 2**(-95/65536), and 1 - beta is 0.4% off).

From the two: the relative error ||realised - ideal|| / ||ideal|| over the
weights whose ideal update is nonzero, and the lost fraction, the share of
those weights whose realised update is exactly zero: the update was rounded
away.  Both are also kept per octave of |w| (floor(log2|w|)), for a plot of
error against weight magnitude, and optionally as a fixed random sample of
individual weights.

    recorder = UpdateErrorRecorder(optimizer)
    for x, y in batches:
        ...; loss.backward()
        with recorder.record():
            optimizer.step()
    recorder.history[-1]["lost_fraction"]

This is reporting code: it decodes to float, outside the optimizer step.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

# Octaves of |w| for the per-magnitude data: floor(log2|w|) clipped to this
# range (zero weights count in the lowest bin).
OCTAVE_LOW, OCTAVE_HIGH = -40, 10


def octave_of(magnitude: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        octave = np.floor(np.log2(magnitude))
    return np.clip(np.nan_to_num(octave, neginf=OCTAVE_LOW), OCTAVE_LOW, OCTAVE_HIGH).astype(np.int64)


def compare_updates(weights: np.ndarray, ideal: np.ndarray, realised: np.ndarray) -> dict:
    """The measures of one step from flat float64 arrays: weights before, ideal and realised updates."""
    meant = ideal != 0
    error_sq = np.square(realised - ideal)
    ideal_sq = np.square(ideal)
    lost = meant & (realised == 0)
    count = int(meant.sum())
    octaves = octave_of(np.abs(weights)) - OCTAVE_LOW
    n_bins = OCTAVE_HIGH - OCTAVE_LOW + 1
    ideal_norm_sq = float(ideal_sq[meant].sum())
    return {
        "count": count,
        "lost_fraction": float(lost.sum()) / count if count else 0.0,
        "relative_error": float(np.sqrt(error_sq[meant].sum() / ideal_norm_sq)) if ideal_norm_sq else 0.0,
        "by_magnitude": {
            "octave": np.arange(OCTAVE_LOW, OCTAVE_HIGH + 1),
            "count": np.bincount(octaves[meant], minlength=n_bins),
            "lost": np.bincount(octaves[lost], minlength=n_bins),
            "error_sq": np.bincount(octaves[meant], weights=error_sq[meant], minlength=n_bins),
            "ideal_sq": np.bincount(octaves[meant], weights=ideal_sq[meant], minlength=n_bins),
        },
    }


class UpdateErrorRecorder:
    """Records the update error of every step taken inside `record()`.

    history: one dict per recorded step, with "step" (the optimizer's step
    count after it), "count", "lost_fraction", "relative_error",
    "by_magnitude" (per-octave arrays, see compare_updates) and, when
    sample_size > 0, "sample": arrays "magnitude", "ideal", "realised" for the
    same sample_size weights (drawn once, seeded) at every step.
    """

    def __init__(self, optimizer, *, sample_size: int = 0, seed: int = 0):
        self.optimizer = optimizer
        self.history: list[dict] = []
        total = sum(p.sign.size for p in optimizer.params)
        rng = np.random.default_rng(seed)
        self.sample = np.sort(rng.choice(total, size=min(sample_size, total), replace=False))

    @contextmanager
    def record(self):
        """Wrap one optimizer.step() in this."""
        opt = self.optimizer
        before = [p.fmt.decode(p.sign, p.exp).ravel() for p in opt.params]
        ideal = []
        for i, w in enumerate(before):
            update = opt.ideal_update(i)
            # A weight without a gradient is meant to stay where it is.
            ideal.append(np.zeros_like(w) if update is None else update.ravel())
        yield
        after = [p.fmt.decode(p.sign, p.exp).ravel() for p in opt.params]
        w = np.concatenate(before)
        meant = np.concatenate(ideal)
        realised = np.concatenate(after) - w
        entry = {"step": opt.steps, **compare_updates(w, meant, realised)}
        if self.sample.size:
            entry["sample"] = {"magnitude": np.abs(w[self.sample]), "ideal": meant[self.sample],
                               "realised": realised[self.sample]}
        self.history.append(entry)

    def series(self, key: str) -> np.ndarray:
        """One scalar measure over the recorded steps, e.g. series("lost_fraction")."""
        return np.array([h[key] for h in self.history])

    def by_magnitude(self) -> dict[str, np.ndarray]:
        """The per-octave data summed over all recorded steps, with the lost fraction and
        relative error of each octave (NaN where no update was meant)."""
        if not self.history:
            raise ValueError("UpdateErrorRecorder.by_magnitude: nothing recorded yet")
        total = {key: sum(h["by_magnitude"][key] for h in self.history)
                 for key in ("count", "lost", "error_sq", "ideal_sq")}
        with np.errstate(divide="ignore", invalid="ignore"):
            total["lost_fraction"] = total["lost"] / total["count"]
            total["relative_error"] = np.sqrt(total["error_sq"] / total["ideal_sq"])
        total["octave"] = self.history[0]["by_magnitude"]["octave"]
        return total
