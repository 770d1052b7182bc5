"""Madam, SGD and Adam written plainly in NumPy float64: the yardstick, never the training path.

The tests hold the LNS optimizers to these; lnsnet.update_error replays one
step of them on the decoded LNS state to get the update an optimizer meant;
baselines train float models with them.  Each `*_update` function is one
step for one weight array and returns the new weights and the new state;
the classes below keep that state for a list of weight arrays.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


def madam_update(w, g, v, step: int, *, lr: float, beta: float = 0.999, g_bound: float = 10.0,
                 weight_decay: float = 0.0, w_max: float = np.inf):
    """Madam (Bernstein et al. 2020) as in DESIGN.md section 4; step counts from 1."""
    v = beta * v + (1.0 - beta) * g * g
    v_hat = v / (1.0 - beta ** step)
    with np.errstate(divide="ignore", invalid="ignore"):
        g_star = np.where(v_hat > 0, g / np.sqrt(v_hat), 0.0)
    g_star = np.clip(g_star, -g_bound, g_bound)
    w = w * np.exp(-lr * (np.sign(w) * g_star + weight_decay))
    return np.sign(w) * np.minimum(np.abs(w), w_max), v


def sgd_update(w, g, momentum_buffer, *, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
    """SGD with heavy-ball momentum (buffer = momentum*buffer + g) and L2 weight decay."""
    g = g + weight_decay * w
    momentum_buffer = momentum * momentum_buffer + g
    return w - lr * momentum_buffer, momentum_buffer


def adam_update(w, g, m, v, step: int, *, lr: float, beta1: float = 0.9, beta2: float = 0.999,
                eps: float = 1e-8, weight_decay: float = 0.0):
    """Adam (Kingma & Ba 2015) with bias correction and L2 weight decay; step counts from 1."""
    g = g + weight_decay * w
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * g * g
    m_hat = m / (1.0 - beta1 ** step)
    v_hat = v / (1.0 - beta2 ** step)
    return w - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


class _Reference(ABC):
    """A list of float64 weight arrays and their per-array optimizer state."""

    def __init__(self, weights, **hyper):
        self.weights = [np.array(w, dtype=np.float64) for w in weights]
        self.hyper = hyper
        self.steps = 0

    def step(self, grads) -> None:
        grads = [np.asarray(g, dtype=np.float64) for g in grads]
        if len(grads) != len(self.weights):
            raise ValueError(f"{type(self).__name__}: {len(grads)} gradients for {len(self.weights)} weights")
        self.steps += 1
        for i, g in enumerate(grads):
            self._update(i, g)

    @abstractmethod
    def _update(self, i: int, g: np.ndarray) -> None:
        """Step weight array i with gradient g."""


class MadamReference(_Reference):
    def __init__(self, weights, lr: float = 0.01, *, beta: float = 0.999, g_bound: float = 10.0,
                 p_scale: float = 3.0, weight_decay: float = 0.0):
        super().__init__(weights, lr=lr, beta=beta, g_bound=g_bound, weight_decay=weight_decay)
        self.w_max = [p_scale * np.sqrt(np.mean(w * w)) for w in self.weights]
        self.v = [np.zeros_like(w) for w in self.weights]

    def _update(self, i, g):
        self.weights[i], self.v[i] = madam_update(self.weights[i], g, self.v[i], self.steps,
                                                  w_max=self.w_max[i], **self.hyper)


class SGDReference(_Reference):
    def __init__(self, weights, lr: float, *, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(weights, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.buffers = [np.zeros_like(w) for w in self.weights]

    def _update(self, i, g):
        self.weights[i], self.buffers[i] = sgd_update(self.weights[i], g, self.buffers[i], **self.hyper)


class AdamReference(_Reference):
    def __init__(self, weights, lr: float = 1e-3, *, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(weights, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)
        self.m = [np.zeros_like(w) for w in self.weights]
        self.v = [np.zeros_like(w) for w in self.weights]

    def _update(self, i, g):
        self.weights[i], self.m[i], self.v[i] = adam_update(
            self.weights[i], g, self.m[i], self.v[i], self.steps, **self.hyper)
