"""Update-error measurement: the measures themselves, and their dependence on |w| for an
additive and a multiplicative update, on cases whose answer is known exactly."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lnsnet import nn, optim
from lnsnet.format import LNSFormat
from lnsnet.tensor import Tensor
from lnsnet.update_error import OCTAVE_LOW, UpdateErrorRecorder, compare_updates

F8 = LNSFormat(8, 8)
F16 = LNSFormat(16, 1024)
F24 = LNSFormat(24, 2 ** 16)


def set_grad(p, values, fmt=F8):
    sign, exp = fmt.encode(values)
    sign, exp, t = fmt.requantize(sign, exp)
    p.grad = Tensor(sign, exp, fmt, t)


def test_compare_updates_by_hand():
    w = np.array([1.0, 2.0, 4.0, 0.5, 0.0])
    ideal = np.array([0.1, 0.0, -0.2, 0.05, 0.0])
    realised = np.array([0.1, 0.0, 0.0, 0.04, 0.0])
    m = compare_updates(w, ideal, realised)
    assert m["count"] == 3
    assert m["lost_fraction"] == pytest.approx(1 / 3)
    assert m["relative_error"] == pytest.approx(math.sqrt((0.2 ** 2 + 0.01 ** 2) / (0.1 ** 2 + 0.2 ** 2 + 0.05 ** 2)))
    bins = m["by_magnitude"]
    index = {int(o): i for i, o in enumerate(bins["octave"])}
    assert bins["count"][index[0]] == 1 and bins["count"][index[2]] == 1 and bins["count"][index[-1]] == 1
    assert bins["count"][index[1]] == 0  # its ideal update is zero: not counted
    assert bins["lost"][index[2]] == 1 and bins["lost"].sum() == 1
    assert bins["error_sq"][index[-1]] == pytest.approx(0.01 ** 2)


def test_nothing_meant():
    m = compare_updates(np.ones(3), np.zeros(3), np.zeros(3))
    assert (m["count"], m["lost_fraction"], m["relative_error"]) == (0, 0.0, 0.0)


def octave_weights(fmt):
    """Positive weights at 2**k, k = -10..-1, twenty of each."""
    values = np.repeat(2.0 ** np.arange(-10, 0), 20)
    return nn.Parameter.from_array(values, fmt)


def test_sgd_loses_updates_on_large_weights_first():
    """The same additive step -1e-3 on weights 2**-10 .. 2**-1 at 8-bit masters: it survives
    where it is at least half an LNS step of w (2**(1/16) - 1 = 4.4% of w, so up to
    w ~ 0.023) and is rounded away above."""
    p = octave_weights(F8)
    opt = optim.SGD([p], lr=1e-3)
    recorder = UpdateErrorRecorder(opt)
    set_grad(p, np.ones(p.shape))
    with recorder.record():
        opt.step()
    bins = recorder.by_magnitude()
    lost = dict(zip(bins["octave"].tolist(), bins["lost_fraction"].tolist()))
    assert all(lost[k] == 0.0 for k in range(-10, -6))
    assert all(lost[k] == 1.0 for k in range(-5, 0))
    assert recorder.history[0]["lost_fraction"] == pytest.approx(0.5, abs=0.11)


def test_madam_error_does_not_depend_on_magnitude():
    """Madam's first step multiplies every weight by 2**(-15/1024) (lr*gamma/ln2 = 14.77,
    rounded) instead of exp(-0.01): the same relative error at every magnitude, nothing lost."""
    p = octave_weights(F16)
    opt = optim.Madam([p], lr=0.01)
    recorder = UpdateErrorRecorder(opt)
    set_grad(p, np.ones(p.shape))
    with recorder.record():
        opt.step()
    bins = recorder.by_magnitude()
    used = bins["count"] > 0
    assert bins["octave"][used].tolist() == list(range(-10, 0))
    assert np.all(bins["lost"] == 0)
    expected = abs((2 ** (-15 / 1024) - 1) - math.expm1(-0.01)) / -math.expm1(-0.01)
    assert np.allclose(bins["relative_error"][used], expected, rtol=1e-9, atol=0)


def test_madam_at_8_bits_loses_its_first_step():
    """At gamma 8 the same step is 0.115 of an LNS step: rounded to nearest, all of it is lost."""
    p = octave_weights(F8)
    opt = optim.Madam([p], lr=0.01)
    recorder = UpdateErrorRecorder(opt)
    set_grad(p, np.ones(p.shape))
    with recorder.record():
        opt.step()
    assert recorder.history[0]["lost_fraction"] == 1.0
    assert recorder.history[0]["relative_error"] == pytest.approx(1.0)


@pytest.mark.parametrize("make", [lambda ps: optim.Madam(ps), lambda ps: optim.SGD(ps, lr=0.01, momentum=0.9),
                                  lambda ps: optim.Adam(ps)], ids=["madam", "sgd", "adam"])
def test_at_24_bits_the_realised_update_is_the_ideal_one(make):
    """At 24 bits (gamma 2**16) a weight moves in steps of 1.06e-5 of itself, so an additive
    update of lr = 1e-3 on |w| ~ 1 is realised to within 0.5%: the bound is 1e-2.  What is
    lost is only what was below half a step (momentum and averages can pass near zero)."""
    rng = np.random.default_rng(0)
    p = nn.Parameter.from_array(rng.uniform(0.1, 1.0, (10, 10)) * rng.choice([-1, 1], (10, 10)), F24)
    opt = make([p])
    recorder = UpdateErrorRecorder(opt, sample_size=p.size)
    for _ in range(5):
        set_grad(p, rng.normal(size=p.shape), F24)
        with recorder.record():
            opt.step()
    assert recorder.series("relative_error").max() < 1e-2
    half_step = 2 ** (0.5 / F24.gamma) - 1
    for entry in recorder.history:
        s = entry["sample"]
        lost = (s["ideal"] != 0) & (s["realised"] == 0)
        assert np.all(np.abs(s["ideal"][lost]) < 1.01 * half_step * s["magnitude"][lost])


def test_recorder_history_sample_and_parameters_without_gradient():
    rng = np.random.default_rng(1)
    p = nn.Parameter.from_array(rng.uniform(0.1, 1.0, 50), F16)
    q = nn.Parameter.from_array(rng.uniform(0.1, 1.0, 30), F16)
    opt = optim.Madam([p, q])
    recorder = UpdateErrorRecorder(opt, sample_size=7, seed=3)
    with pytest.raises(ValueError, match="nothing recorded"):
        recorder.by_magnitude()
    for _ in range(3):
        set_grad(p, rng.normal(size=p.shape))
        with recorder.record():
            opt.step()
    assert recorder.series("step").tolist() == [1, 2, 3]
    entry = recorder.history[-1]
    assert entry["count"] == 50  # q has no gradient: nothing was meant for it
    assert entry["by_magnitude"]["count"].sum() == 50
    assert entry["by_magnitude"]["octave"][0] == OCTAVE_LOW
    sample = entry["sample"]
    assert {k: v.shape for k, v in sample.items()} == {"magnitude": (7,), "ideal": (7,), "realised": (7,)}
    assert np.array_equal(recorder.history[0]["sample"]["magnitude"] > 0, np.ones(7, bool))
