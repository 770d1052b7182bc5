"""What the three LNS optimizers share: parameter groups, integer state, the master write.

An optimizer updates each parameter's MASTER copy (p.sign, p.exp in p.fmt);
the forward pass reads a rounded copy of it.  Its state (Madam's and Adam's
second moment, momentum, Adam's first moment) is kept as LNS tensors
("moments") in one state format, by default 24 bits at gamma 2**16: an
exponential average with beta = 0.999 changes by 0.1% a step, which a
coarse gamma cannot resolve (at gamma 8, beta itself rounds to 1).

The integer-only rule (DESIGN.md section 3) shapes the class: every float
hyperparameter is turned into integer constants by `constants()` when the
optimizer is made or the learning rate changes (ROM contents); `step()`
reads only those constants and integer arrays.  Float appears again only in
`ideal_update()`, a reporting hook that replays the step in float64
(lnsnet.optim.reference) on the decoded state, for lnsnet.update_error.

State is saved as integer codes: `state_dict()` is a flat dict of NumPy
arrays (an .npz needs nothing else) and `load_state_dict()` checks all of
it before changing anything.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import numpy as np

from lnsnet import kernels
from lnsnet.format import EXP_DTYPE, ROUNDING_MODES, SIGN_DTYPE, LNSFormat, rescale
from lnsnet.tables import tables_for

DEFAULT_STATE_FORMAT = LNSFormat(24, 2 ** 16)


class Moment(NamedTuple):
    """An LNS state tensor in the optimizer's state format: sign, exponent, scale exponent t."""

    sign: np.ndarray
    exp: np.ndarray
    t: int

    @classmethod
    def zeros(cls, shape) -> "Moment":
        return cls(np.zeros(shape, SIGN_DTYPE), np.zeros(shape, EXP_DTYPE), 0)


def lns_constant(value: float, fmt: LNSFormat) -> tuple[int, int]:
    """(sign, exponent) of a float hyperparameter in fmt: a ROM entry, built outside step()."""
    sign, exp = fmt.encode(value)
    return int(sign), int(exp)


def one_minus(exp: int, fmt: LNSFormat) -> int:
    """The exponent of 1 - 2**(exp/gamma) for exp < 0, through the DB table.

    Averages use (1 - beta) computed from the already rounded beta, so that
    the two weights of `beta*m + (1-beta)*g` still sum to 1 and the bias
    correction 1 - beta**t (the same subtraction) undoes the start exactly:
    at step 1 the corrected average is the first sample itself.
    """
    _, x = kernels.sub(1, 0, 1, exp, fmt.tables)
    return int(x)


def bias_correction(beta_exp: int, step: int, fmt: LNSFormat) -> int:
    """The exponent of 1 - beta**step, from integers: beta**step is step * beta_exp."""
    return one_minus(step * beta_exp, fmt)


def _as_groups(params) -> list[dict]:
    params = list(params)
    if not params:
        raise ValueError("optimizer got an empty parameter list")
    if all(isinstance(g, dict) for g in params):
        return [dict(g, params=list(g["params"])) for g in params]
    if any(isinstance(g, dict) for g in params):
        raise ValueError("optimizer: give either parameters or parameter groups (dicts), not a mix")
    return [{"params": params}]


class Optimizer(ABC):
    """Base class.  Subclasses set `moments` and define `constants`, `update`, `reference_update`.

    params: parameters, or groups {"params": [...], "lr": ..., ...} whose keys
    override the defaults.  master: an LNSFormat every master copy is moved to
    now (default: keep each parameter's own).  state_format: the format of the
    moments.  rounding: how a result is rounded to the master format,
    "nearest" or "stochastic" (with a PCG64 integer generator seeded by seed).
    """

    moments: tuple[str, ...] = ()
    # Moments whose tiny entries must not flush to zero (Madam divides by them).
    saturating_moments: tuple[str, ...] = ()

    def __init__(self, params, defaults: dict, *, master: LNSFormat | None = None,
                 state_format: LNSFormat = DEFAULT_STATE_FORMAT, rounding: str = "nearest",
                 seed: int = 0):
        if rounding not in ROUNDING_MODES:
            raise ValueError(f"{type(self).__name__}: rounding={rounding!r}, expected one of {ROUNDING_MODES}")
        self.defaults = dict(defaults)
        self.param_groups = []
        for group in _as_groups(params):
            unknown = set(group) - set(defaults) - {"params"}
            if unknown:
                raise ValueError(f"{type(self).__name__}: unknown hyperparameter(s) {sorted(unknown)}")
            self.param_groups.append({**self.defaults, **group})
        self.params = [p for g in self.param_groups for p in g["params"]]
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError(f"{type(self).__name__}: a parameter appears more than once")
        self._group_of = [g for g in self.param_groups for _ in g["params"]]
        self.state_format = state_format
        self.rounding = rounding
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.steps = 0
        for group in self.param_groups:
            self.check_hyper(group)
        if master is not None:
            for p in self.params:
                sign, exp, _ = master.requantize(p.sign, p.exp, src_gamma=p.fmt.gamma,
                                                 underflow="saturate")
                p.set_master(sign, exp, master)
        self.state = [self.init_state(p, g) for p, g in zip(self.params, self._group_of)]
        self._rom = [self.constants(g, p) for p, g in zip(self.params, self._group_of)]

    # ---- what a subclass defines -------------------------------------------
    @abstractmethod
    def check_hyper(self, group: dict) -> None:
        """Raise ValueError for hyperparameters out of range."""

    def init_state(self, p, group: dict) -> dict:
        """Per-parameter state: an integer step count and zero moments."""
        return {"step": 0, **{name: Moment.zeros(p.sign.shape) for name in self.moments}}

    @abstractmethod
    def constants(self, group: dict, p) -> NamedTuple:
        """Integer constants for p's updates, from the group's float hyperparameters."""

    @abstractmethod
    def update(self, p, state: dict, const) -> None:
        """One integer update of p's master copy from p.grad."""

    @abstractmethod
    def reference_update(self, w, g, state: dict, group: dict, p) -> np.ndarray:
        """The float64 weights after the step this optimizer means (reporting only)."""

    # ---- the training interface --------------------------------------------
    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient.  Integer-only."""
        for p, state, const in zip(self.params, self.state, self._rom):
            if p.grad is None:
                continue
            state["step"] += 1
            self.update(p, state, const)
        self.steps += 1

    def set_lr(self, lr: float, group: int | None = None) -> None:
        """Change the learning rate of one group (default: all) and rebuild its constants."""
        groups = self.param_groups if group is None else [self.param_groups[group]]
        for g in groups:
            self.check_hyper({**g, "lr": float(lr)})
        for g in groups:
            g["lr"] = float(lr)
        self._rebuild()

    def _rebuild(self) -> None:
        self._rom = [self.constants(g, p) for p, g in zip(self.params, self._group_of)]

    # ---- integer helpers used by update() ----------------------------------
    def grad_in_state_gamma(self, p):
        """p.grad's (sign, exponent) written in the state format's gamma."""
        exp = rescale(p.grad.exp, p.grad.fmt.gamma, self.state_format.gamma)
        return p.grad.sign, exp

    def master_in_state_gamma(self, p):
        return p.sign, rescale(p.exp, p.fmt.gamma, self.state_format.gamma)

    def new_moment(self, name: str, sign, exp) -> Moment:
        """Requantize a moment to the state format (see saturating_moments)."""
        underflow = "saturate" if name in self.saturating_moments else "flush"
        s, x, t = self.state_format.requantize(sign, exp, underflow=underflow)
        return Moment(s, x, t)

    def average(self, name: str, moment: Moment, beta_exp: int, one_minus_exp: int, sign, exp) -> Moment:
        """beta*moment ⊕ (1-beta)*sample, the LNS exponential average."""
        s, x = kernels.add(moment.sign, moment.exp + beta_exp, sign, exp + one_minus_exp,
                           self.state_format.tables)
        return self.new_moment(name, s, x)

    def write_master(self, p, sign, exp, src_gamma: int) -> None:
        """Round (sign, exp) once to p's master format (saturating, never flushing) and store it.

        The master's window (scale t) follows its largest weight: set_master requantizes.
        """
        s, x, _ = p.fmt.requantize(sign, exp, underflow="saturate", src_gamma=src_gamma,
                                   rounding=self.rounding, rng=self.rng)
        p.set_master(s, x, p.fmt)

    def add_to_master(self, p, sign, exp) -> None:
        """w <- w ⊕ delta, delta given in the state gamma.

        The ⊕ is done at the finer of the state and master gammas (both
        operands move there by exact shifts) and the sum is rounded once to
        the master format: an update smaller than half a master step is lost
        here, which is what the SGD/Adam vs Madam comparison measures.
        """
        fine = max(self.state_format.gamma, p.fmt.gamma)
        s, x = kernels.add(p.sign, rescale(p.exp, p.fmt.gamma, fine),
                           sign, rescale(exp, self.state_format.gamma, fine), tables_for(fine))
        self.write_master(p, s, x, fine)

    # ---- reporting ----------------------------------------------------------
    def decode_moment(self, moment: Moment) -> np.ndarray:
        return self.state_format.decode(moment.sign, moment.exp)

    def ideal_update(self, index: int) -> np.ndarray | None:
        """The float64 update parameter `index` would get from its next step in exact
        arithmetic, from the decoded weights, gradient and state (None without a gradient).
        Call it before step(); lnsnet.update_error compares it with what happened.
        """
        p = self.params[index]
        if p.grad is None:
            return None
        w = p.fmt.decode(p.sign, p.exp)
        g = p.grad.fmt.decode(p.grad.sign, p.grad.exp)
        return self.reference_update(w, g, self.state[index], self._group_of[index], p) - w

    # ---- saving and loading -------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything step() depends on, as a flat dict of arrays: integer codes for the
        moments, int64 counts, float64 hyperparameters, and the generator's state."""
        fs = self.state_format
        out = {
            "type": np.array(type(self).__name__),
            "steps": np.array(self.steps, np.int64),
            "state_format": np.array([fs.bits, fs.gamma], np.int64),
            "rounding": np.array(self.rounding),
            "rng": _rng_words(self.rng),
        }
        for gi, group in enumerate(self.param_groups):
            out[f"group{gi}.size"] = np.array(len(group["params"]), np.int64)
            for key in self.defaults:
                out[f"group{gi}.{key}"] = np.array(group[key], np.float64)
        for i, state in enumerate(self.state):
            for key, value in state.items():
                if isinstance(value, Moment):
                    out[f"param{i}.{key}.codes"] = fs.pack(value.sign, value.exp, value.t)
                    out[f"param{i}.{key}.t"] = np.array(value.t, np.int64)
                else:
                    out[f"param{i}.{key}"] = np.array(value, np.int64)
        return out

    def validate_state_dict(self, sd: dict) -> dict:
        """Check sd against this optimizer and decode it, changing nothing.

        Returns the parsed state for install_state(); raises ValueError naming
        the first thing that does not match.
        """
        name = type(self).__name__
        found = np.asarray(sd.get("type", ""))
        if found.dtype.kind != "U" or str(found) != name:
            raise ValueError(f"the optimizer state is for {str(found) or 'no optimizer'!r}, not {name}")
        expected = self.state_dict()
        missing = sorted(set(expected) - set(sd))
        unexpected = sorted(set(sd) - set(expected))
        if missing or unexpected:
            raise ValueError(f"{name} state does not match this optimizer: "
                             f"missing {missing[:5]}, unexpected {unexpected[:5]}")
        for key in ("rounding", "state_format"):
            if not np.array_equal(sd[key], expected[key]):
                raise ValueError(f"{name} state: {key} is {sd[key]} in the file, {expected[key]} here")
        for key, ref in expected.items():
            got = np.asarray(sd[key])
            if got.shape != ref.shape or got.dtype != ref.dtype:
                raise ValueError(f"{name} state: {key} is {got.dtype} of shape {got.shape}, "
                                 f"expected {ref.dtype} of shape {ref.shape}")
        try:
            _set_rng_words(np.random.Generator(np.random.PCG64()), sd["rng"])
        except (ValueError, TypeError) as err:
            raise ValueError(f"{name} state: the random generator state is invalid: {err}") from None
        parsed = {"steps": int(sd["steps"]), "rng": np.asarray(sd["rng"]), "groups": [], "state": []}
        for gi, group in enumerate(self.param_groups):
            size = int(sd[f"group{gi}.size"])
            if size != len(group["params"]):
                raise ValueError(f"{name} state: group {gi} has {size} parameters in the file, "
                                 f"{len(group['params'])} here")
            hyper = {key: float(sd[f"group{gi}.{key}"]) for key in self.defaults}
            self.check_hyper(hyper)
            parsed["groups"].append(hyper)
        limit = self.state_format.limit
        for i, (p, state) in enumerate(zip(self.params, self.state)):
            new = {}
            for key, value in state.items():
                if not isinstance(value, Moment):
                    new[key] = int(sd[f"param{i}.{key}"])
                    continue
                t = int(sd[f"param{i}.{key}.t"])
                if abs(t) > limit:
                    raise ValueError(f"{name} state: param{i}.{key}.t = {t} is outside +-{limit}")
                try:
                    new[key] = Moment(*self.state_format.unpack(sd[f"param{i}.{key}.codes"], t), t)
                except ValueError as err:
                    raise ValueError(f"{name} state: param{i}.{key}: {err}") from None
            self.check_state(f"param{i}", p, new)
            parsed["state"].append(new)
        return parsed

    def check_state(self, where: str, p, state: dict) -> None:
        """Raise ValueError if a loaded per-parameter state cannot be p's."""
        if state["step"] < 0:
            raise ValueError(f"{type(self).__name__} state: {where}.step is negative ({state['step']})")

    def install_state(self, parsed: dict) -> None:
        """Adopt a state returned by validate_state_dict (which cannot fail half-way)."""
        self.steps = parsed["steps"]
        _set_rng_words(self.rng, parsed["rng"])
        for group, hyper in zip(self.param_groups, parsed["groups"]):
            group.update(hyper)
        self.state = parsed["state"]
        self._rebuild()

    def load_state_dict(self, sd: dict) -> None:
        self.install_state(self.validate_state_dict(sd))


# PCG64's state is two 128-bit integers and a buffered 32-bit half; saved as six uint64 words.
_MASK64 = (1 << 64) - 1


def _rng_words(rng: np.random.Generator) -> np.ndarray:
    st = rng.bit_generator.state
    s, inc = st["state"]["state"], st["state"]["inc"]
    return np.array([s >> 64, s & _MASK64, inc >> 64, inc & _MASK64,
                     st["has_uint32"], st["uinteger"]], dtype=np.uint64)


def _set_rng_words(rng: np.random.Generator, words: np.ndarray) -> None:
    w = [int(v) for v in words]
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": (w[0] << 64) | w[1], "inc": (w[2] << 64) | w[3]},
        "has_uint32": w[4], "uinteger": w[5],
    }
