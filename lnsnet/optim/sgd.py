"""SGD with momentum, computed in LNS and ⊕-added to the master weight.

    g   <- g ⊕ weight_decay*w                  (if weight_decay > 0)
    buf <- momentum*buf ⊕ g                    (heavy ball; buf = g at the first step)
    w   <- w ⊕ (-lr*buf)                       rounded once to the master format

The products are exponent additions of LNS constants; the two sums are ⊕.
The last ⊕ is where an additive update smaller than half a master step of w
disappears (lnsnet.optim.base.Optimizer.add_to_master).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lnsnet import kernels
from lnsnet.optim import reference
from lnsnet.optim.base import Optimizer, lns_constant


class SGDConstants(NamedTuple):
    lr: tuple[int, int]             # (sign, exponent) in the state format; sign 0 means 0
    momentum: tuple[int, int]
    weight_decay: tuple[int, int]


class SGD(Optimizer):
    moments = ("momentum_buffer",)

    def __init__(self, params, lr: float, *, momentum: float = 0.0, weight_decay: float = 0.0, **options):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay), **options)

    def check_hyper(self, group: dict) -> None:
        for key in ("lr", "momentum", "weight_decay"):
            if not group[key] >= 0:
                raise ValueError(f"SGD: {key} must be >= 0, got {group[key]}")
        if not group["momentum"] < 1:
            raise ValueError(f"SGD: momentum must be below 1, got {group['momentum']}")

    def constants(self, group: dict, p) -> SGDConstants:
        fs = self.state_format
        return SGDConstants(*(lns_constant(group[key], fs) for key in ("lr", "momentum", "weight_decay")))

    def update(self, p, state: dict, c: SGDConstants) -> None:
        tables = self.state_format.tables
        g_sign, g_exp = self.grad_in_state_gamma(p)
        w_sign, w_exp = self.master_in_state_gamma(p)
        g_sign, g_exp = kernels.add(g_sign, g_exp, w_sign * c.weight_decay[0], w_exp + c.weight_decay[1],
                                    tables)
        buf = state["momentum_buffer"]
        buf_sign, buf_exp = kernels.add(buf.sign * c.momentum[0], buf.exp + c.momentum[1],
                                        g_sign, g_exp, tables)
        buf = self.new_moment("momentum_buffer", buf_sign, buf_exp)
        state["momentum_buffer"] = buf
        self.add_to_master(p, -buf.sign * c.lr[0], buf.exp + c.lr[1])

    def reference_update(self, w, g, state: dict, group: dict, p) -> np.ndarray:
        w_new, _ = reference.sgd_update(
            w, g, self.decode_moment(state["momentum_buffer"]), lr=group["lr"],
            momentum=group["momentum"], weight_decay=group["weight_decay"])
        return w_new
