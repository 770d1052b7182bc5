"""The float32 baseline's hand-written backward passes, checked by finite differences."""
from __future__ import annotations

import numpy as np
import pytest

from lnsnet import baseline as fb


def tiny_net(rng, kind):
    return fb.Float32Net([
        ("0", fb.Conv2d(rng.normal(size=(3, 2, 3, 3)) * 0.5, rng.normal(size=3) * 0.1, stride=1, padding=1)),
        ("1", fb.ReLU()),
        ("2", fb.Pool2d(2, kind)),
        ("3", fb.Flatten()),
        ("4", fb.Linear(rng.normal(size=(4, 3 * 3 * 3)) * 0.3, rng.normal(size=4) * 0.1)),
    ])


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_backward_matches_finite_differences(kind):
    # float32 central differences with step 1e-3 on O(1) values: truncation
    # error O(h**2) ~ 1e-6, rounding ~ 1e-7 / h ~ 1e-4, and a step this small
    # rarely crosses a ReLU or max-pool kink; 2e-3 still tells a right
    # gradient from a wrong one (a transposed or missing term is O(0.1)).
    rng = np.random.default_rng(1)
    net = tiny_net(rng, kind)
    x = rng.normal(size=(2, 2, 6, 6)).astype(np.float32)
    labels = np.array([1, 3])
    _, grad = fb.softmax_cross_entropy(net(x), labels)
    net.backward(grad)
    h = np.float32(1e-3)
    checked = 0
    for _, layer, attr in net.named_parameters():
        w = getattr(layer, attr)
        analytic = layer.grads[attr]
        for idx in list(np.ndindex(w.shape))[::7]:
            old = w[idx]
            w[idx] = old + h
            up, _ = fb.softmax_cross_entropy(net(x), labels)
            w[idx] = old - h
            down, _ = fb.softmax_cross_entropy(net(x), labels)
            w[idx] = old
            assert abs((up - down) / (2 * h) - analytic[idx]) < 2e-3, (attr, idx)
            checked += 1
    assert checked > 20


def test_max_pool_sends_tied_gradient_to_the_first_maximum_only():
    pool = fb.Pool2d(2, "max")
    x = np.ones((1, 1, 2, 2), dtype=np.float32)
    pool.forward(x)
    dx = pool.backward(np.ones((1, 1, 1, 1), dtype=np.float32))
    assert dx.sum() == 1 and dx[0, 0, 0, 0] == 1


@pytest.mark.parametrize("model", ["mlp", "lenet"])
def test_float32_copy_computes_what_the_lns_model_computes(model):
    # At 16 bits, gamma 1024, the LNS model's logits carry ~0.5-step roundings
    # per op (2**(0.5/1024) - 1 = 3.4e-4 relative each, a few dozen ops deep);
    # the float32 copy of the same weights must agree to 2% of the logits'
    # scale: a wrong layer mapping (pool, padding, transposed weight) is O(1).
    import lnsnet
    from lnsnet import LNSFormat
    from lnsnet.engines import MODEL_BUILDERS, float32_net

    lns_model = MODEL_BUILDERS[model](seed=3)
    fine = LNSFormat(16, 1024)
    lns_model.precision = lnsnet.precision(forward=fine, backward=fine)
    x = np.random.default_rng(0).random((4, 1, 28, 28))
    want = lns_model(lnsnet.tensor(x, fine)).numpy()
    got = float32_net(lns_model)(x.astype(np.float32))
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 0.02 * np.abs(want).max()
