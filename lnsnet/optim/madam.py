"""LNS-Madam: the multiplicative update as an integer change of each weight's exponent.

DESIGN.md section 4, for a weight w = s * 2**(x/gamma_w) with gradient g:

    v  <- beta*v + (1-beta)*g**2            LNS ⊕ of scaled squares, beta = 0.999
    g* <- clamp(g / sqrt(v / (1-beta**t)), +-g_bound)
    x  <- x - round(lr * gamma_w/ln2 * (sign(w)*g* + weight_decay))
    x  <- min(x, x_max),    x_max = exponent of p_scale * RMS(initial w)

Multiplying w by exp(-lr*sign(w)*g*) moves log2|w| by -lr*sign(w)*g*/ln2,
i.e. x by gamma_w times that; the sign never changes and a zero never moves
(so biases must start nonzero or be left out).  weight_decay (default 0)
shrinks every |w| by exp(-lr*weight_decay) a step: a multiplicative decay
that shares the one rounding with the gradient term.

How each line is done in integers, at the state gamma gamma_s (v's format):
- beta is the LNS constant round(gamma_s*log2 beta); 1-beta and 1-beta**t
  come from the DB table (lnsnet.optim.base.one_minus), so no float is needed
  at any step count;
- g/sqrt(v_hat) is one exponent subtraction and one halving; the clamp is a
  min on the exponent;
- sign(w)*g* goes to fixed point (G_FRAC fraction bits, through the POW2
  table), is multiplied by the integer factor round(lr*gamma_w/ln2 * 2**scale)
  and shifted right by G_FRAC + scale with rounding to nearest (half away
  from zero) or stochastic rounding (a uniform integer added below the cut).
The factor is rebuilt whenever lr changes (lnsnet.optim.schedule).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from lnsnet import kernels
from lnsnet.format import MAX_FRAC_BITS, stochastic_offset
from lnsnet.optim import reference
from lnsnet.optim.base import Optimizer, bias_correction, lns_constant, one_minus

# Fraction bits of g* in fixed point: |g*| <= g_bound < 16 keeps it below 2**28.
G_FRAC = 24
# The step factor is kept below 2**FACTOR_BITS, so the product stays below 2**59.
FACTOR_BITS = 31
# g_bound + weight_decay must stay below 2**(28 - G_FRAC) = 16 for the same reason.
DRIVE_LIMIT = 16.0
# Right shifts stop at 62 bits: the rounding offset 2**61 plus the product fits int64.
MAX_SHIFT = 62


class MadamConstants(NamedTuple):
    beta: int            # exponent of beta in the state format
    one_minus_beta: int  # exponent of 1 - beta, from the DB table
    bound: int           # exponent of g_bound in the state format
    factor: int          # round(lr * gamma_w / ln2 * 2**(shift - G_FRAC))
    shift: int
    decay: int           # round(weight_decay * 2**G_FRAC)


# lr * gamma_w / ln2 must stay below 2**FACTOR_BITS for the largest gamma, 2**16.
MAX_LR = 2.0 ** FACTOR_BITS * math.log(2.0) / 2.0 ** MAX_FRAC_BITS


def step_factor(rate: float) -> tuple[int, int]:
    """(factor, shift) with factor / 2**shift ~ rate / 2**G_FRAC, for 0 <= rate < 2**FACTOR_BITS.

    The factor uses all FACTOR_BITS while rate >= 2**-7 (lr >= 6.8e-4 at
    gamma 8), a relative error of at most 2**-31; below that the shift is
    capped and the error is at most 2**-39 of a step in absolute terms, far
    below the half step that rounding decides on.
    """
    if rate == 0.0:
        return 0, MAX_SHIFT
    _, octave = math.frexp(rate)  # rate < 2**octave
    scale = min(FACTOR_BITS - octave, MAX_SHIFT - G_FRAC)
    return round(rate * 2.0 ** scale), G_FRAC + scale


class Madam(Optimizer):
    """LNS-Madam.  lr 0.01, beta 0.999, g_bound 10 and p_scale 3 are the paper's values."""

    moments = ("v",)
    saturating_moments = ("v",)  # g / sqrt(v) needs v > 0 wherever g was ever nonzero

    def __init__(self, params, lr: float = 0.01, *, beta: float = 0.999, g_bound: float = 10.0,
                 p_scale: float = 3.0, weight_decay: float = 0.0, **options):
        defaults = dict(lr=lr, beta=beta, g_bound=g_bound, p_scale=p_scale, weight_decay=weight_decay)
        super().__init__(params, defaults, **options)

    def check_hyper(self, group: dict) -> None:
        if not 0 <= group["lr"] < MAX_LR:
            raise ValueError(f"Madam: lr must be in [0, {MAX_LR:.0f}), got {group['lr']}")
        if not 0 < group["beta"] < 1:
            raise ValueError(f"Madam: beta must be in (0, 1), got {group['beta']}")
        if lns_constant(group["beta"], self.state_format)[1] >= 0:
            raise ValueError(f"Madam: beta={group['beta']} rounds to 1 in {self.state_format}; "
                             f"use a state format with a finer gamma")
        if not group["p_scale"] > 0:
            raise ValueError(f"Madam: p_scale must be > 0, got {group['p_scale']}")
        if not (group["g_bound"] > 0 and group["weight_decay"] >= 0
                and group["g_bound"] + group["weight_decay"] < DRIVE_LIMIT):
            raise ValueError(f"Madam: need g_bound > 0, weight_decay >= 0 and their sum below "
                             f"{DRIVE_LIMIT:g}; got {group['g_bound']} and {group['weight_decay']}")

    def init_state(self, p, group: dict) -> dict:
        state = super().init_state(p, group)
        w = p.fmt.decode(p.sign, p.exp)
        sign, exp = p.fmt.encode(group["p_scale"] * np.sqrt(np.mean(np.square(w))) if w.size else 0.0)
        # An all-zero weight never moves, so its ceiling does not matter.
        state["x_max"] = int(exp) if sign else p.fmt.limit
        return state

    def check_state(self, where: str, p, state: dict) -> None:
        super().check_state(where, p, state)
        if abs(state["x_max"]) > p.fmt.limit:
            raise ValueError(f"Madam state: {where}.x_max = {state['x_max']} is outside "
                             f"+-{p.fmt.limit} for {p.fmt}")

    def constants(self, group: dict, p) -> MadamConstants:
        fs = self.state_format
        beta = lns_constant(group["beta"], fs)[1]
        factor, shift = step_factor(group["lr"] * p.fmt.gamma / math.log(2.0))
        return MadamConstants(
            beta=beta, one_minus_beta=one_minus(beta, fs), bound=lns_constant(group["g_bound"], fs)[1],
            factor=factor, shift=shift, decay=round(group["weight_decay"] * 2 ** G_FRAC))

    def update(self, p, state: dict, c: MadamConstants) -> None:
        fs = self.state_format
        g_sign, g_exp = self.grad_in_state_gamma(p)
        v = state["v"]
        v = self.new_moment("v", *kernels.madam_moment(g_sign, g_exp, v.sign, v.exp, beta=c.beta,
                                                       one_minus_beta=c.one_minus_beta, tables=fs.tables))
        state["v"] = v
        offset = None
        if self.rounding == "stochastic":
            offset = stochastic_offset(p.sign.shape, c.shift, self.rng)
        x = kernels.madam_exponents(
            g_sign, g_exp, p.sign, p.exp, v.sign, v.exp, correction=bias_correction(c.beta, state["step"], fs),
            bound=c.bound, decay=c.decay, factor=c.factor, shift=c.shift, x_max=state["x_max"],
            frac=G_FRAC, tables=fs.tables, offset=offset)
        self.write_master(p, p.sign, x, p.fmt.gamma)

    def reference_update(self, w, g, state: dict, group: dict, p) -> np.ndarray:
        w_new, _ = reference.madam_update(
            w, g, self.decode_moment(state["v"]), state["step"] + 1, lr=group["lr"],
            beta=group["beta"], g_bound=group["g_bound"], weight_decay=group["weight_decay"],
            w_max=float(p.fmt.decode(1, state["x_max"])))
        return w_new
