"""The LNS optimizers: Madam's invariants and clamps, integer-only steps, tracking the
float64 references, schedules, and the lost-update comparison at 8-bit weights."""
from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest

import lnsnet
from lnsnet import nn, optim
from lnsnet.format import LNSFormat
from lnsnet.ops import cross_entropy
from lnsnet.optim import reference
from lnsnet.optim.madam import G_FRAC
from lnsnet.tensor import Tensor, tensor
from lnsnet.update_error import UpdateErrorRecorder

F8 = LNSFormat(8, 8)
F16 = LNSFormat(16, 1024)
F24 = LNSFormat(24, 2 ** 16)

OPTIMIZERS = {
    "madam": (optim.Madam, dict(lr=0.01)),
    "sgd": (optim.SGD, dict(lr=0.05, momentum=0.9)),
    "adam": (optim.Adam, dict(lr=1e-3)),
}


def set_grad(p, values, fmt=F8):
    """Give parameter p a gradient of these float values, encoded in fmt (test set-up)."""
    sign, exp = fmt.encode(values)
    sign, exp, t = fmt.requantize(sign, exp)
    p.grad = Tensor(sign, exp, fmt, t)


def teacher_problem(seed=0, n=256, d=64, classes=10):
    """Gaussian inputs labelled by a random linear teacher: a small, learnable, seeded task."""
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(n, d))
    return rng, inputs, np.argmax(inputs @ rng.normal(size=(d, classes)), axis=1)


def decoded_loss(logits, labels):
    """Cross-entropy in float64 from the decoded logits.  The LNS loss is a value of the 8-bit
    forward format (steps of 9%), too coarse to see a small decrease."""
    z = logits.numpy()
    z = z - z.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(labels)), labels]))


def small_net(rng, master):
    return nn.Sequential(nn.Linear(64, 32, seed=rng, master=master), nn.ReLU(),
                         nn.Linear(32, 10, seed=rng, master=master))


# ---- Madam's invariants ------------------------------------------------------------
def madam_weights(seed=1, shape=(40, 30)):
    """Uniform magnitudes, so none starts above the ceiling 3*RMS; a tenth are zeros."""
    rng = np.random.default_rng(seed)
    values = rng.choice([-1.0, 1.0], shape) * rng.uniform(0.01, 0.5, shape)
    values[rng.random(shape) < 0.1] = 0.0
    return rng, nn.Parameter.from_array(values, F16)


def test_madam_keeps_signs_zeros_and_the_ceiling():
    rng, p = madam_weights()
    sign0 = p.sign.copy()
    opt = optim.Madam([p], lr=0.05)
    x_max = opt.state[0]["x_max"]
    w0 = p.numpy()
    assert x_max == round(1024 * math.log2(3 * np.sqrt(np.mean(w0 ** 2))))
    for _ in range(150):
        # Push every weight away from zero (sign(w)*g < 0 grows |w|), with noise
        # in both directions so that some also shrink.
        set_grad(p, -np.sign(w0) * rng.uniform(0.5, 1.5, w0.shape) + rng.normal(0, 0.3, w0.shape))
        opt.step()
        assert np.array_equal(p.sign, sign0)
        assert p.exp[sign0 != 0].max() <= x_max
        assert np.all(p.exp[sign0 == 0] == 0)
    # The push was strong enough for the ceiling to be reached, so it was tested.
    assert (p.exp[sign0 != 0] == x_max).mean() > 0.5


def test_madam_bounds_the_normalised_gradient():
    """After T gradients of size 1e-3 one of size 1 gives g* ~ sqrt(T+1) (the bias-corrected
    average takes in a 1/(T+1) share of the spike): with T = 300 that is 17 > g_bound, and
    the step is round(lr*gamma/ln2*g_bound) exactly.  The gradients shrink every weight,
    so none is held by the ceiling."""
    _, p = madam_weights(seed=2)
    opt = optim.Madam([p], lr=0.01)
    nonzero = p.sign != 0
    for _ in range(300):
        set_grad(p, 1e-3 * p.sign)
        opt.step()
    before = p.exp.astype(np.int64)
    set_grad(p, 1.0 * p.sign)
    opt.step()
    moved = np.abs(p.exp.astype(np.int64) - before)[nonzero]
    expected = round(0.01 * 1024 / math.log(2) * 10.0)
    assert np.all(moved == expected), np.unique(moved)


def test_madam_first_step_is_exactly_one_normalised_unit():
    """At step 1 the bias-corrected v is g**2 itself (the same DB-table subtraction gives
    1-beta and 1-beta**1), so |g*| = 1 and every weight moves by round(lr*gamma/ln2)."""
    rng, p = madam_weights(seed=3)
    opt = optim.Madam([p], lr=0.01)
    before = p.exp.astype(np.int64)
    set_grad(p, rng.normal(0, 1, p.shape))
    opt.step()
    nonzero = p.sign != 0
    step = (before - p.exp)[nonzero]
    direction = (p.sign * p.grad.sign)[nonzero]
    assert np.array_equal(step, direction * round(0.01 * 1024 / math.log(2)))


def test_madam_multiplicative_weight_decay():
    _, p = madam_weights(seed=4)
    opt = optim.Madam([p], lr=0.01, weight_decay=0.5)
    before = p.exp.copy()
    set_grad(p, np.zeros(p.shape))
    opt.step()
    nonzero = p.sign != 0
    shrink = round(0.01 * 1024 / math.log(2) * 0.5)
    assert np.array_equal((before - p.exp)[nonzero], np.full(nonzero.sum(), shrink))


def test_madam_step_factor_precision():
    """The integer factor holds lr*gamma/ln2 to 2**-30 relative (it has 31 bits)."""
    opt = optim.Madam([nn.Parameter.from_array(np.ones(3), F8)], lr=3e-4)
    c = opt._rom[0]
    rate = 3e-4 * 8 / math.log(2)
    assert abs(c.factor / 2 ** (c.shift - G_FRAC) - rate) / rate < 2 ** -30


@pytest.mark.parametrize("bad", [dict(lr=-1.0), dict(beta=1.0), dict(g_bound=0.0), dict(p_scale=0.0),
                                 dict(g_bound=10.0, weight_decay=7.0), dict(lr=1e6)])
def test_madam_rejects_bad_hyperparameters(bad):
    with pytest.raises(ValueError, match="Madam"):
        optim.Madam([nn.Parameter.from_array(np.ones(3), F16)], **bad)


def test_beta_that_rounds_to_one_is_an_error():
    """At gamma 8, 0.999 is 2**(0/8) = 1: the average would never learn."""
    p = nn.Parameter.from_array(np.ones(3), F16)
    with pytest.raises(ValueError, match="rounds to 1"):
        optim.Madam([p], state_format=F8)
    with pytest.raises(ValueError, match="rounds to 1"):
        optim.Adam([p], state_format=F8)


# ---- the base class ----------------------------------------------------------------
def test_master_option_moves_every_master_copy():
    model = nn.mlp(seed=0)
    optim.SGD(model.parameters(), lr=0.1, master=F8)
    for _, p in model.named_parameters():
        assert p.fmt == F8
        assert np.all(p.sign != 0)  # saturating: no weight flushed to zero


def test_param_groups_and_set_lr():
    model = small_net(np.random.default_rng(0), F16)
    first, second = model[0], model[2]
    opt = optim.Madam([{"params": [first.weight, first.bias]},
                       {"params": [second.weight, second.bias], "lr": 0.001}])
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.001]
    factors = [c.factor for c in opt._rom]
    opt.set_lr(0.002, group=0)
    assert [c.factor for c in opt._rom][2:] == factors[2:]
    assert opt._rom[0].factor != factors[0]
    with pytest.raises(ValueError, match="unknown"):
        optim.Madam([{"params": [first.weight], "momentum": 0.9}])
    with pytest.raises(ValueError, match="more than once"):
        optim.Madam([first.weight, first.weight])


def test_zero_grad_and_parameters_without_gradient_are_skipped():
    rng, p = madam_weights()
    _, q = madam_weights(seed=5)
    opt = optim.Madam([p, q])
    set_grad(p, rng.normal(size=p.shape))
    q_before = q.exp.copy()
    opt.step()
    assert opt.state[0]["step"] == 1 and opt.state[1]["step"] == 0
    assert np.array_equal(q.exp, q_before)
    opt.zero_grad()
    assert p.grad is None


# ---- schedules -----------------------------------------------------------------------
def test_step_schedule_changes_the_integer_factor():
    _, p = madam_weights()
    opt = optim.Madam([p], lr=0.04)
    schedule = optim.StepLR(opt, step_size=2, factor=0.5)
    lrs, factors = [], []
    for _ in range(5):
        schedule.step()
        lrs.append(opt.param_groups[0]["lr"])
        factors.append(opt._rom[0].factor / 2 ** opt._rom[0].shift)
    assert lrs == [0.04, 0.02, 0.02, 0.01, 0.01]
    assert factors[1] == pytest.approx(factors[0] / 2, rel=1e-9)


def test_cosine_schedule_reaches_min_lr_and_then_madam_stands_still():
    rng, p = madam_weights()
    opt = optim.Madam([p], lr=0.01)
    schedule = optim.CosineLR(opt, total_steps=4)
    seen = []
    for _ in range(4):
        set_grad(p, rng.normal(size=p.shape))
        opt.step()
        schedule.step()
        seen.append(opt.param_groups[0]["lr"])
    assert seen == pytest.approx([0.01 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(1, 5)])
    before = p.exp.copy()
    set_grad(p, rng.normal(size=p.shape))
    opt.step()
    assert np.array_equal(p.exp, before)


def test_sgd_lr_constant_follows_the_schedule():
    _, p = madam_weights()
    opt = optim.SGD([p], lr=0.1)
    schedule = optim.StepLR(opt, step_size=1, factor=0.5)
    x0 = opt._rom[0].lr[1]
    schedule.step()
    assert opt._rom[0].lr[1] == x0 - opt.state_format.gamma  # half: one octave down


# ---- against the float64 references ----------------------------------------------
# A quadratic 0.5*|w - target|**2 with the gradient taken from the decoded weights,
# encoded at 24 bits: both runs see the same problem, the LNS one through its roundings.
# Every weight is held to 5e-3 relative after 300 steps.  Each step rounds x to
# 1/2**16 of an octave (1e-5 relative); Madam's g* also carries the state
# format's rounding (beta = 0.999 is 2**(-95/65536), 0.4% off in 1 - beta, which
# enters g* through a square root) and the step factor's 2**-31.  Errors do not
# pile up because the problem contracts.  Measured worst: Madam 7e-4, SGD 1.2e-5,
# Adam 9.5e-5.
TRACK_STEPS = 300
TRACK_TOLERANCE = 5e-3


@pytest.mark.parametrize("name, hyper, ref_class", [
    ("madam", dict(lr=0.01), reference.MadamReference),
    ("sgd", dict(lr=0.05, momentum=0.9), reference.SGDReference),
    ("adam", dict(lr=0.01), reference.AdamReference),
])
def test_24_bit_lns_tracks_the_float64_reference(name, hyper, ref_class):
    rng = np.random.default_rng(0)
    w0, target = rng.normal(0, 0.5, (20, 10)), rng.normal(0, 0.5, (20, 10))
    p = nn.Parameter.from_array(w0, F24)
    opt = OPTIMIZERS[name][0]([p], **hyper)
    ref = ref_class([p.numpy()], **hyper)
    for _ in range(TRACK_STEPS):
        set_grad(p, p.numpy() - target, F24)
        opt.step()
        ref.step([ref.weights[0] - target])
    lns, exact = p.numpy(), ref.weights[0]
    assert np.max(np.abs(lns - exact) / np.abs(exact)) < TRACK_TOLERANCE


def test_ideal_update_is_the_reference_step_on_the_decoded_state():
    rng, p = madam_weights()
    opt = optim.Madam([p], lr=0.01)
    set_grad(p, rng.normal(size=p.shape))
    opt.step()
    set_grad(p, rng.normal(size=p.shape))
    w = p.numpy()
    v = opt.decode_moment(opt.state[0]["v"])
    expected, _ = reference.madam_update(w, p.grad.numpy(), v, 2, lr=0.01,
                                         w_max=float(F16.decode(1, opt.state[0]["x_max"])))
    assert np.array_equal(opt.ideal_update(0), expected - w)


# ---- training --------------------------------------------------------------------
def train(name, master, steps, rounding="nearest", record=False):
    rng, inputs, labels = teacher_problem()
    model = small_net(rng, master)
    cls, hyper = OPTIMIZERS[name]
    opt = cls(model.parameters(), rounding=rounding, seed=1, **hyper)
    recorder = UpdateErrorRecorder(opt) if record else None
    full_loss = []
    for step in range(steps + 1):
        with lnsnet.no_grad():
            full_loss.append(decoded_loss(model(tensor(inputs)), labels))
        if step == steps:
            break
        batch = rng.choice(len(inputs), size=32, replace=False)
        opt.zero_grad()
        cross_entropy(model(tensor(inputs[batch])), labels[batch]).backward()
        if recorder is None:
            opt.step()
        else:
            with recorder.record():
                opt.step()
    return full_loss, recorder


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_loss_goes_down(name):
    """60 steps at 16-bit masters; measured: the full-set loss falls from 3.34 to 1.94
    (Madam), 0.18 (SGD), 2.26 (Adam)."""
    loss, _ = train(name, F16, steps=60)
    assert loss[-1] < 0.8 * loss[0], loss


def test_stochastic_rounding_is_seeded():
    a, _ = train("madam", F8, steps=3, rounding="stochastic")
    b, _ = train("madam", F8, steps=3, rounding="stochastic")
    assert a == b


def test_stochastic_madam_step_is_unbiased():
    """Averaged over many weights, the stochastically rounded exponent change equals the
    unrounded lr*gamma/ln2*sign(w)*g* (here g* = +-1 at step 1, a change of 0.115 steps
    at gamma 8, which rounding to nearest would lose entirely)."""
    rng = np.random.default_rng(6)
    p = nn.Parameter.from_array(rng.uniform(0.5, 1.0, 20000), F8)
    opt = optim.Madam([p], rounding="stochastic", seed=3)
    before = p.exp.astype(np.int64)
    set_grad(p, np.ones(p.shape))
    opt.step()
    mean_step = (before - p.exp).mean()
    assert mean_step == pytest.approx(0.01 * 8 / math.log(2), abs=0.01)


# The claim of the LNS-Madam paper, measured: at 8-bit master weights (gamma 8),
# does Madam lose a smaller share of its updates to rounding than SGD?  With the
# contract's Madam (lr 0.01, rounding to nearest) one step moves the exponent by
# lr*8/ln2*|g*| = 0.115*|g*| LNS steps, so every update with |g*| < 4.3 is lost,
# and |g*| is about 1 (it is a gradient normalised by its RMS).  SGD's update is
# lost only where |lr*buf| < 4.4% of |w|.  Measured on this problem (40 steps):
# Madam 1.000, SGD 0.741, Adam 0.973.  The assertion stays as the claim states
# it; it is marked as an expected failure until the contract changes (a larger
# lr or gamma for 8-bit masters, or stochastic rounding).
@pytest.mark.xfail(strict=True, reason="at 8-bit (gamma 8) masters Madam's lr=0.01 step is 0.115 of an "
                                       "LNS step per unit g*: rounded to nearest it is lost (measured "
                                       "lost fractions: Madam 1.000, SGD 0.741, Adam 0.973)")
def test_madam_loses_fewer_updates_than_sgd_at_8_bits():
    lost = {name: train(name, F8, steps=40, record=True)[1].series("lost_fraction").mean()
            for name in OPTIMIZERS}
    print("lost fractions at 8-bit masters:", lost)
    assert 0 < lost["sgd"] < 1 and 0 < lost["adam"] <= 1
    assert lost["madam"] < lost["sgd"], lost


# ---- the integer-only rule -------------------------------------------------------
LNSNET_DIR = os.path.dirname(os.path.abspath(lnsnet.__file__))


def _in_lnsnet(frame) -> bool:
    return frame is not None and frame.f_code.co_filename.startswith(LNSNET_DIR)


class IntegerOnly:
    """Traces every Python frame of lnsnet while a function runs and checks each value it
    names: every NumPy array must have an integer (or boolean) dtype, and no float may
    appear.  Checked are the locals of lnsnet frames after each line and at return, the
    return value of every function lnsnet calls (NumPy's Python-level ones included), and
    the contents of tuples (a kernel returns (sign, exp)).  Arrays that C code builds and
    consumes within one expression are not seen; every one that is named or returned is.
    """

    def __init__(self):
        self.arrays = 0
        self.violations = []

    def check(self, where, value, depth=0):
        if isinstance(value, np.ndarray):
            self.arrays += 1
            if value.dtype.kind not in "biu":
                self.violations.append(f"{where}: {value.dtype} array of shape {value.shape}")
        elif isinstance(value, (float, complex, np.floating, np.complexfloating)):
            self.violations.append(f"{where}: {type(value).__name__} {value!r}")
        elif isinstance(value, tuple) and depth < 2:
            for i, item in enumerate(value):
                self.check(f"{where}[{i}]", item, depth + 1)

    def _local(self, frame, event, arg):
        code = frame.f_code
        where = f"{os.path.basename(code.co_filename)}:{frame.f_lineno} {code.co_name}"
        if _in_lnsnet(frame) and event in ("line", "return"):
            for name, value in frame.f_locals.items():
                self.check(f"{where} {name}", value)
        if event == "return":
            self.check(f"{where} returned", arg)
        return self._local

    def _global(self, frame, event, arg):
        if _in_lnsnet(frame) or _in_lnsnet(frame.f_back):
            return self._local
        return None

    def run(self, fn):
        sys.settrace(self._global)
        try:
            fn()
        finally:
            sys.settrace(None)


def test_the_tracer_catches_float():
    """The check is not vacuous: float arithmetic inside lnsnet is reported."""
    tracer = IntegerOnly()
    tracer.run(lambda: F8.decode(np.ones(3, np.int8), np.zeros(3, np.int32)))
    assert tracer.violations and "decode" in tracer.violations[0]


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_forward_backward_and_step_are_integer_only(name):
    """One training step of the mlp, integer-only from the encoded batch to the new master
    weights: forward, loss, backward and the optimizer step, with stochastic rounding so
    the generator's path is covered too.  Float is allowed, and used, before it: encoding
    the batch, building the optimizer's constants, and the tables (ROMs) the first step
    builds on first use, so one step runs untraced first."""
    rng = np.random.default_rng(0)
    model = nn.mlp(seed=0)
    cls, hyper = OPTIMIZERS[name]
    opt = cls(model.parameters(), rounding="stochastic", **hyper)
    x = tensor(rng.random((4, 784)))
    labels = rng.integers(0, 10, 4)

    def training_step():
        opt.zero_grad()
        cross_entropy(model(x), labels).backward()
        opt.step()

    training_step()
    before = [p.exp.copy() for p in model.parameters()]
    tracer = IntegerOnly()
    tracer.run(training_step)
    assert not tracer.violations, tracer.violations[:10]
    assert tracer.arrays > 500, tracer.arrays
    assert any(not np.array_equal(b, p.exp) for b, p in zip(before, model.parameters()))
