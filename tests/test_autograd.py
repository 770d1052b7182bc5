"""The autograd engine: fan-out, long chains, freeing the graph, no_grad, precision per role."""
from __future__ import annotations

import gc
import sys
import weakref

import numpy as np
import pytest

import lnsnet
from lnsnet import LNSFormat, Precision
from lnsnet.tensor import Function

F8 = LNSFormat(8, 8)
F16 = LNSFormat(16, 1024)
ONE_ROUNDING = 0.5 + 0.01  # one rounding to nearest plus table precision (see test_ops.py)


def steps(t: lnsnet.Tensor, reference) -> float:
    """Worst distance in LNS steps from the reference; zeros must match exactly."""
    reference = np.asarray(reference, dtype=np.float64)
    assert (t.sign == np.sign(reference)).all()
    kept = reference != 0
    return float(np.abs(t.exp[kept] - t.fmt.gamma * np.log2(np.abs(reference[kept]))).max(initial=0.0))


@pytest.mark.parametrize("fmt", [F16, F8])
def test_fan_out_sums_the_gradients_of_every_use(fmt):
    with Precision(forward=fmt, backward=fmt):
        x = lnsnet.tensor([0.75, -1.5, 3.0, 0.3], fmt=fmt, requires_grad=True)
        y = x * x + x  # x used three times
        y.backward(lnsnet.tensor(np.ones(4), fmt=fmt))
    # x receives g (from the add), then g*x twice (from the mul), each exact;
    # they are summed by two ⊕ as they arrive: two roundings.  (The values
    # keep the partial sums away from cancellation, which would magnify the
    # first rounding.)
    assert steps(x.grad, 2 * x.numpy() + 1) <= 2 * ONE_ROUNDING
    assert x.grad.fmt == fmt


def test_a_tensor_feeding_two_branches():
    with Precision(forward=F16, backward=F16):
        rng = np.random.default_rng(0)
        x = lnsnet.tensor(rng.uniform(0.5, 2, (3, 4)), requires_grad=True)
        a = lnsnet.tensor(rng.uniform(0.5, 2, (4, 2)))
        b = lnsnet.tensor(rng.uniform(0.5, 2, (3, 4)))
        loss = (x @ a).sum() + (x * b).sum()
        loss.backward()
    reference = np.broadcast_to(a.numpy().sum(axis=1), (3, 4)) + b.numpy()
    # Each branch's gradient is one rounding off; their ⊕ (positive) adds one more.
    assert steps(x.grad, reference) <= 2 * ONE_ROUNDING


def test_a_chain_of_ten_thousand_ops_has_no_recursion_limit():
    assert sys.getrecursionlimit() < 10_000
    x = lnsnet.tensor([1.5, -0.5], requires_grad=True)
    two = lnsnet.tensor([2.0, 2.0])
    y = x
    for i in range(10_000):
        y = -y if i % 2 else y * two / two  # exact ops: the gradient stays exactly 1
    y.sum().backward()
    assert x.grad.numpy().tolist() == [1.0, 1.0]


def test_the_graph_is_freed_after_backward():
    x = lnsnet.tensor([1.0, 2.0], requires_grad=True)
    h = x * x
    loss = h.sum()
    alive = weakref.ref(h)
    del h
    gc.collect()
    assert alive() is not None  # the graph holds it
    loss.backward()
    gc.collect()
    assert alive() is None
    with pytest.raises(ValueError, match="freed"):
        loss.backward()


def test_activations_are_freed_as_backward_passes_them():
    """Once the functions that read an intermediate result have run backward, nothing holds
    it (as in PyTorch): a network's activations are freed during backward, not at its end."""
    alive_at_probe = {}

    class Probe(Function):
        """The identity; its backward looks at which watched results still exist."""

        def forward(self, x):
            return lnsnet.Tensor(x.sign.copy(), x.exp.copy(), x.fmt, x.scale)

        def backward(self, g):
            gc.collect()
            alive_at_probe.update({name: ref() is not None for name, ref in watched.items()})
            return (self.as_gradient(g),)

    x = lnsnet.tensor([1.0, -2.0, 3.0], requires_grad=True)
    h = Probe.apply(x)
    y = h * h
    loss = lnsnet.ops.relu(y).sum()
    watched = {"probe's result": weakref.ref(h), "h * h": weakref.ref(y)}
    del h, y
    gc.collect()
    assert all(ref() is not None for ref in watched.values())  # the graph holds them
    loss.backward()
    assert alive_at_probe == {"probe's result": False, "h * h": False}
    np.testing.assert_allclose(x.grad.numpy(), [2.0, -4.0, 6.0], rtol=0.05)  # d(h*h)/dx = 2x


def test_leaf_gradients_accumulate_across_backward_calls():
    x = lnsnet.tensor([1.0, -2.0], fmt=F16, requires_grad=True)
    with Precision(forward=F16, backward=F16):
        (x * 3).sum().backward()
        (x * 5).sum().backward()
    assert np.allclose(x.grad.numpy(), [8.0, 8.0], rtol=1e-3)


def test_no_grad_builds_no_graph():
    x = lnsnet.tensor([1.0, 2.0], requires_grad=True)
    with lnsnet.no_grad():
        y = (x * x).sum()
    assert not y.requires_grad and y._ctx is None
    with pytest.raises(ValueError, match="does not require grad"):
        y.backward()
    assert (x * x).requires_grad


def test_detach_stops_the_gradient():
    x = lnsnet.tensor([1.0, 2.0], requires_grad=True)
    w = lnsnet.tensor([3.0, 4.0], requires_grad=True)
    (x.detach() * w).sum().backward()
    assert x.grad is None
    assert np.allclose(w.grad.numpy(), x.numpy())


def test_only_wanted_gradients_are_computed():
    x = lnsnet.tensor(np.ones((2, 3)))
    w = lnsnet.tensor(np.ones((3, 4)), requires_grad=True)
    (x @ w).sum().backward()
    assert x.grad is None and w.grad.shape == (3, 4)


def test_backward_argument_checks():
    x = lnsnet.tensor([1.0, 2.0], requires_grad=True)
    y = x * x
    with pytest.raises(ValueError, match=r"one-element.*\(2,\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        y.backward(lnsnet.tensor([1.0, 1.0, 1.0]))


def test_gradients_take_the_backward_format_recorded_by_the_forward_pass():
    rng = np.random.default_rng(1)
    x = lnsnet.tensor(rng.uniform(0.5, 2, (4, 5)), fmt=F8, requires_grad=True)
    w = lnsnet.tensor(rng.uniform(-2, 2, (5, 3)), fmt=F8, requires_grad=True)
    with lnsnet.precision(forward=F8, backward=F16):
        loss = (x @ w).relu().sum()
    loss.backward()  # outside the block: the ops remember F16
    assert x.grad.fmt == F16 and w.grad.fmt == F16
    hidden = x.numpy() @ w.numpy()
    g = (hidden > 0).astype(float)
    # Computed at gamma 1024 (F8 exponents shift exactly), one rounding in F16 steps.
    assert steps(w.grad, x.numpy().T @ g) <= ONE_ROUNDING
    assert steps(x.grad, g @ w.numpy().T) <= ONE_ROUNDING


def test_a_module_precision_is_entered_on_each_call():
    layer = lnsnet.nn.Linear(3, 2, seed=0)
    layer.precision = lnsnet.precision(forward=LNSFormat(6, 4), backward=LNSFormat(10, 64))
    out = layer(lnsnet.tensor(np.ones((1, 3))))
    assert out.fmt == LNSFormat(6, 4)
    out.sum().backward()
    assert layer.weight.grad.fmt == LNSFormat(10, 64)


def test_precision_validates_its_roles():
    with pytest.raises(ValueError, match="accumulation mode"):
        lnsnet.precision(accumulate="kahan")
    with pytest.raises(ValueError, match="forward"):
        Precision(forward=8)
