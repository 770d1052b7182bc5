"""Adam (bias-corrected), computed in LNS and ⊕-added to the master weight.

    g  <- g ⊕ weight_decay*w                        (if weight_decay > 0)
    m  <- beta1*m ⊕ (1-beta1)*g
    v  <- beta2*v ⊕ (1-beta2)*g**2
    u  <- lr * (m / (1-beta1**t)) / (sqrt(v / (1-beta2**t)) ⊕ eps)
    w  <- w ⊕ (-u)                                  rounded once to the master format

Products, quotients and the square root are exponent arithmetic; the bias
corrections come from the DB table as in Madam (lnsnet.optim.base).  The
update has the size of lr whatever the weight, so on a large weight it is
lost to the final rounding more often than Madam's relative step.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lnsnet import kernels
from lnsnet.optim import reference
from lnsnet.optim.base import Optimizer, bias_correction, lns_constant, one_minus


class AdamConstants(NamedTuple):
    lr: tuple[int, int]             # (sign, exponent) in the state format; sign 0 means 0
    beta1: int                      # exponents in the state format
    one_minus_beta1: int
    beta2: int
    one_minus_beta2: int
    eps: int
    weight_decay: tuple[int, int]


class Adam(Optimizer):
    moments = ("m", "v")

    def __init__(self, params, lr: float = 1e-3, *, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0, **options):
        defaults = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults, **options)

    def check_hyper(self, group: dict) -> None:
        for key in ("lr", "weight_decay"):
            if not group[key] >= 0:
                raise ValueError(f"Adam: {key} must be >= 0, got {group[key]}")
        if not group["eps"] > 0:
            raise ValueError(f"Adam: eps must be > 0, got {group['eps']}")
        for key in ("beta1", "beta2"):
            if not 0 < group[key] < 1:
                raise ValueError(f"Adam: {key} must be in (0, 1), got {group[key]}")
            if lns_constant(group[key], self.state_format)[1] >= 0:
                raise ValueError(f"Adam: {key}={group[key]} rounds to 1 in {self.state_format}; "
                                 f"use a state format with a finer gamma")

    def constants(self, group: dict, p) -> AdamConstants:
        fs = self.state_format
        beta1 = lns_constant(group["beta1"], fs)[1]
        beta2 = lns_constant(group["beta2"], fs)[1]
        return AdamConstants(
            lr=lns_constant(group["lr"], fs), beta1=beta1, one_minus_beta1=one_minus(beta1, fs),
            beta2=beta2, one_minus_beta2=one_minus(beta2, fs), eps=lns_constant(group["eps"], fs)[1],
            weight_decay=lns_constant(group["weight_decay"], fs))

    def update(self, p, state: dict, c: AdamConstants) -> None:
        fs = self.state_format
        g_sign, g_exp = self.grad_in_state_gamma(p)
        w_sign, w_exp = self.master_in_state_gamma(p)
        g_sign, g_exp = kernels.add(g_sign, g_exp, w_sign * c.weight_decay[0], w_exp + c.weight_decay[1],
                                    fs.tables)
        m = self.average("m", state["m"], c.beta1, c.one_minus_beta1, g_sign, g_exp)
        v = self.average("v", state["v"], c.beta2, c.one_minus_beta2, *kernels.square(g_sign, g_exp))
        state["m"], state["v"] = m, v
        root_sign, root_exp = kernels.sqrt(v.sign, v.exp - bias_correction(c.beta2, state["step"], fs))
        _, den_exp = kernels.add(root_sign, root_exp, 1, c.eps, fs.tables)
        u_exp = m.exp - bias_correction(c.beta1, state["step"], fs) - den_exp + c.lr[1]
        self.add_to_master(p, -m.sign * c.lr[0], u_exp)

    def reference_update(self, w, g, state: dict, group: dict, p) -> np.ndarray:
        w_new, _, _ = reference.adam_update(
            w, g, self.decode_moment(state["m"]), self.decode_moment(state["v"]), state["step"] + 1,
            lr=group["lr"], beta1=group["beta1"], beta2=group["beta2"], eps=group["eps"],
            weight_decay=group["weight_decay"])
        return w_new
