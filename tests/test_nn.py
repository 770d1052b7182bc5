"""Parameters, modules, state dicts, the ready models, and their gradients against float64."""
from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import lnsnet
from lnsnet import LNSFormat, Precision, nn
from lnsnet.format import rescale

F8 = LNSFormat(8, 8)
F16 = LNSFormat(16, 1024)


# ---- Parameter: the contract with the optimizer --------------------------------------------------
def test_parameter_holds_the_master_copy():
    p = nn.Parameter.from_array([0.5, -0.25, 3.0])
    assert isinstance(p, lnsnet.Tensor) and p.requires_grad and p.is_leaf
    assert p.fmt == nn.DEFAULT_MASTER == LNSFormat(16, 1024)
    assert p.sign.dtype == np.int8 and p.exp.dtype == np.int32
    assert p.exp.tolist() == [-1024, -2048, round(1024 * math.log2(3))]
    assert p.scale == p.exp.max() and p.version == 0 and p.grad is None


def test_set_master_replaces_in_place_and_bumps_the_version():
    p = nn.Parameter.from_array([0.5, -0.25])
    same_object = p
    p.set_master(np.array([1, 1], np.int8), np.array([10, 20], np.int32), LNSFormat(12, 64))
    assert p is same_object and p.version == 1
    assert p.fmt == LNSFormat(12, 64) and p.sign.tolist() == [1, 1] and p.exp.tolist() == [10, 20]
    assert p.scale == 20
    p.set_master(p.sign, p.exp - 1, p.fmt)  # fmt kept
    assert p.version == 2 and p.exp.tolist() == [9, 19]


def test_set_master_validates():
    p = nn.Parameter.from_array(np.ones((2, 3)))
    before = (p.sign.copy(), p.exp.copy(), p.version)
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)"):
        p.set_master(np.ones((3, 2), np.int8), np.zeros((3, 2), np.int32), p.fmt)
    with pytest.raises(ValueError, match="integer"):
        p.set_master(np.ones((2, 3)), np.zeros((2, 3), np.int32), p.fmt)
    assert (p.sign == before[0]).all() and (p.exp == before[1]).all() and p.version == before[2]


def test_forward_value_is_the_rescaled_master_saturated_and_cached():
    values = np.array([1.3, -0.7, 2.0 ** -30])  # the last lies far below an 8-bit window
    p = nn.Parameter.from_array(values)
    view = p.forward_value(F8)
    assert view.fmt == F8 and view.sign.tolist() == [1, -1, 1]  # saturated, not flushed
    expected_sign, expected_exp, t = F8.requantize(p.sign, rescale(p.exp, 1024, 8), underflow="saturate")
    assert (view.exp == expected_exp).all() and view.scale == t
    assert view.exp[2] == t - F8.span  # the smallest magnitude of the window
    again = p.forward_value(F8)
    assert again is not view and again.exp is view.exp  # a new graph node, the cached values
    p.set_master(p.sign, p.exp + 1024, p.fmt)
    assert p.forward_value(F8).exp is not view.exp and p.forward_value(F8).exp[0] == view.exp[0] + 8


def test_gradients_reach_the_master_in_the_backward_format():
    p = nn.Parameter.from_array([[1.0, 2.0]])
    with Precision(forward=F8, backward=LNSFormat(10, 16)):
        x = lnsnet.tensor([[3.0], [0.5]])
        (x @ p.forward_value(F8)).sum().backward()
    assert p.grad.fmt == LNSFormat(10, 16) and p.grad.sign.dtype == np.int8
    assert p.grad.exp.dtype.kind == "i" and p.grad.shape == (1, 2)
    assert np.allclose(p.grad.numpy(), [[3.5, 3.5]], rtol=0.05)


def test_a_parameter_used_twice_sums_its_gradients():
    shared = nn.Linear(3, 3, seed=1)
    first, second = nn.Linear(3, 3, seed=1), nn.Linear(3, 3, seed=1)  # the same values, apart
    x = np.abs(np.random.default_rng(0).normal(size=(4, 3)))
    with Precision(forward=F16, backward=F16):
        nn.Sequential(shared, nn.ReLU(), shared)(lnsnet.tensor(x)).sum().backward()
        nn.Sequential(first, nn.ReLU(), second)(lnsnet.tensor(x)).sum().backward()
    assert shared.weight.grad.fmt == F16
    assert len(list(nn.Sequential(shared, nn.ReLU(), shared).parameters())) == 2  # listed once
    both = first.weight.grad.numpy() + second.weight.grad.numpy()
    # The two uses' gradients meet with one ⊕: half a step, 3.4e-4 relative.
    np.testing.assert_allclose(shared.weight.grad.numpy(), both, rtol=2 ** (0.51 / 1024) - 1)


# ---- Module ------------------------------------------------------------------------------------------
def test_parameters_are_found_in_a_stable_order_with_dotted_names():
    model = nn.mlp(seed=0)
    names = [name for name, _ in model.named_parameters()]
    assert names == ["1.weight", "1.bias", "3.weight", "3.bias", "5.weight", "5.bias"]
    assert [p.shape for p in model.parameters()] == [(256, 784), (256,), (256, 256), (256,), (10, 256), (10,)]
    assert [name for name, _ in nn.lenet().named_parameters()][:4] == ["0.weight", "0.bias", "3.weight", "3.bias"]


def test_train_eval_and_zero_grad():
    model = nn.lenet()
    assert model.training and all(m.training for m in model)
    assert model.eval() is model and not any(m.training for m in model) and not model.training
    model.train()
    assert all(m.training for m in model)
    for p in model.parameters():
        p.grad = lnsnet.tensor(np.ones(p.shape))
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_initialisation_is_seeded_and_documented():
    a, b, c = nn.mlp(seed=3), nn.mlp(seed=3), nn.mlp(seed=4)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert (pa.exp == pb.exp).all() and (pa.sign == pb.sign).all()
    assert not (a[1].weight.exp == c[1].weight.exp).all()
    w = a[1].weight.numpy()
    bound = math.sqrt(6 / 784)
    assert np.abs(w).max() <= bound * 1.001 and np.abs(w).max() > bound * 0.9
    for layer in (a[1], a[3], a[5]):
        bias = layer.bias.numpy()
        scale = 1 / math.sqrt(layer.in_features)
        assert (layer.bias.sign != 0).all()  # Madam cannot move a zero
        assert (np.abs(bias) >= 0.1 * scale * 0.99).all() and (np.abs(bias) <= scale * 1.01).all()
        assert (bias > 0).any() and (bias < 0).any()
    assert all((p.sign != 0).all() for p in nn.lenet(seed=5).parameters())


def test_state_dict_is_integer_codes_and_round_trips():
    model = nn.lenet(seed=1)
    state = model.state_dict()
    assert set(state) == {f"{n}.{f}" for n, _ in model.named_parameters() for f in ("codes", "scale", "format")}
    assert all(v.dtype.kind in "iu" for v in state.values())
    assert state["0.weight.codes"].dtype == np.uint16 and state["0.weight.format"].tolist() == [16, 1024]
    other = nn.lenet(seed=2)
    other.load_state_dict(state)
    for (name, p), q in zip(model.named_parameters(), other.parameters()):
        assert (p.sign == q.sign).all() and (p.exp == q.exp).all(), name
        assert q.version == 1


def test_load_state_dict_errors_change_nothing():
    model = nn.mlp(seed=1)
    before = [p.exp.copy() for p in model.parameters()]
    good = nn.mlp(seed=2).state_dict()
    bad_shape = dict(good)
    bad_shape["5.weight.codes"] = good["5.weight.codes"][:, :100]
    with pytest.raises(ValueError, match=r"5\.weight.*\(10, 100\).*\(10, 256\)"):
        model.load_state_dict(bad_shape)
    bad_format = dict(good)
    bad_format["3.bias.format"] = np.array([8, 8])
    with pytest.raises(ValueError, match=r"3\.bias.*LNSFormat\(bits=8, gamma=8\).*LNSFormat\(bits=16, gamma=1024\)"):
        model.load_state_dict(bad_format)
    missing = {k: v for k, v in good.items() if not k.startswith("1.bias")}
    with pytest.raises(ValueError, match=r"missing keys \['1\.bias\.codes'"):
        model.load_state_dict(missing)
    assert all((p.exp == e).all() and p.version == 0 for p, e in zip(model.parameters(), before))


def test_wrong_shapes_name_the_shapes():
    x = lnsnet.tensor(np.ones((2, 100)))
    with pytest.raises(ValueError, match=r"\(2, 100\).*\(256, 784\)"):
        nn.mlp()[1](x)
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"\(2, 1, 8, 8\).*\(4, 3, 3, 3\)"):
        conv(lnsnet.tensor(np.ones((2, 1, 8, 8))))
    with pytest.raises(ValueError, match=r"outside 0\.\.9 for logits of shape \(2, 10\): \[10\]"):
        lnsnet.cross_entropy(lnsnet.tensor(np.ones((2, 10))), np.array([3, 10]))
    with pytest.raises(TypeError, match="lnsnet.tensor"):
        conv(np.ones((2, 3, 8, 8)))


def test_layers_compute_in_the_forward_format_in_effect():
    layer = nn.Linear(4, 2)
    x = lnsnet.tensor(np.ones((1, 4)), fmt=F16)
    with lnsnet.precision(forward=LNSFormat(6, 4)):
        out = layer(x)  # the input is cast to the forward format
    assert out.fmt == LNSFormat(6, 4)
    out.sum().backward()
    assert layer.weight.grad.fmt == F8  # default backward format


def test_other_layers_run():
    x = lnsnet.tensor(np.random.default_rng(0).normal(size=(2, 3, 6, 6)), requires_grad=True)
    out = nn.Sequential(nn.LeakyReLU(0.1), nn.AvgPool2d(2), nn.MaxPool2d(3, stride=1), nn.Flatten())(x)
    assert out.shape == (2, 3)
    out.sum().backward()
    assert x.grad.shape == x.shape


# ---- the ready models against a float64 reference ----------------------------------------------------
def _windows(x, kernel, stride):
    return sliding_window_view(x, kernel, axis=(2, 3))[:, :, ::stride, ::stride]


def _scatter_windows(grad_windows, x_shape, stride):
    """Sum (N, C, Ho, Wo, kh, kw) window gradients back onto x_shape."""
    out = np.zeros(x_shape)
    _, _, ho, wo, kh, kw = grad_windows.shape
    for u in range(kh):
        for v in range(kw):
            out[:, :, u:u + (ho - 1) * stride + 1:stride, v:v + (wo - 1) * stride + 1:stride] += grad_windows[..., u, v]
    return out


def float_reference(model, activations, labels, fmt):
    """Loss and parameter gradients of model in float64, on the decoded forward-format weights.

    activations: the LNS model's input and layer outputs, decoded.  The
    reference takes its ReLU and max-pool decisions from them, so that both
    differentiate the same linear piece of the network: otherwise a unit
    whose pre-activation is within rounding of zero may switch on one side
    only, an O(1) change to its gradient that no precision bound describes.
    """
    weights = {id(p): p.forward_value(fmt).numpy() for p in model.parameters()}
    tape, a = [], activations[0]
    for layer, lns_in, lns_out in zip(model, activations[:-1], activations[1:]):
        if isinstance(layer, nn.Flatten):
            tape.append(a.shape)
            a = a.reshape(a.shape[0], -1)
        elif isinstance(layer, nn.Linear):
            tape.append(a)
            a = a @ weights[id(layer.weight)].T + weights[id(layer.bias)]
        elif isinstance(layer, nn.ReLU):
            tape.append(lns_out > 0)
            a = np.where(lns_out > 0, a, 0.0)
        elif isinstance(layer, nn.Conv2d):
            p = layer.padding
            xp = np.pad(a, ((0, 0), (0, 0), (p, p), (p, p)))
            tape.append((xp, a.shape))
            w = weights[id(layer.weight)]
            a = np.einsum("nchwuv,ocuv->nohw", _windows(xp, w.shape[2:], 1), w)
            a += weights[id(layer.bias)][None, :, None, None]
        elif isinstance(layer, nn.MaxPool2d):
            flat = _windows(a, (2, 2), 2).reshape(lns_out.shape + (4,))
            winner = _windows(lns_in, (2, 2), 2).reshape(lns_out.shape + (4,)).argmax(axis=-1)
            tape.append((a.shape, winner))
            a = np.take_along_axis(flat, winner[..., None], axis=-1)[..., 0]
    shifted = a - a.max(axis=1, keepdims=True)
    log_total = np.log(np.exp(shifted).sum(axis=1))
    rows = np.arange(len(labels))
    loss = (log_total - shifted[rows, labels]).mean()
    g = np.exp(shifted - log_total[:, None])
    g[rows, labels] -= 1
    g /= len(labels)
    grads = {}
    for layer, saved in zip(reversed(list(model)), reversed(tape)):
        if isinstance(layer, nn.Flatten):
            g = g.reshape(saved)
        elif isinstance(layer, nn.Linear):
            grads[id(layer.weight)], grads[id(layer.bias)] = g.T @ saved, g.sum(axis=0)
            g = g @ weights[id(layer.weight)]
        elif isinstance(layer, nn.ReLU):
            g = np.where(saved, g, 0.0)
        elif isinstance(layer, nn.Conv2d):
            xp, x_shape = saved
            w = weights[id(layer.weight)]
            grads[id(layer.weight)] = np.einsum("nohw,nchwuv->ocuv", g, _windows(xp, w.shape[2:], 1))
            grads[id(layer.bias)] = g.sum(axis=(0, 2, 3))
            gxp = _scatter_windows(np.einsum("nohw,ocuv->nchwuv", g, w), xp.shape, 1)
            p = layer.padding
            g = gxp[:, :, p:p + x_shape[2], p:p + x_shape[3]]
        elif isinstance(layer, nn.MaxPool2d):
            x_shape, winner = saved
            onehot = (np.arange(4) == winner[..., None]) * g[..., None]
            g = _scatter_windows(onehot.reshape(onehot.shape[:4] + (2, 2)), x_shape, 2)
    return loss, grads


def model_errors(make_model, fmt, batch=64, seed=0):
    """Relative errors of the LNS loss and of each parameter's gradient (L2 norm) vs float64."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, size=(batch, 1, 28, 28)) * (rng.uniform(size=(batch, 1, 28, 28)) < 0.3)
    labels = rng.integers(0, 10, size=batch)
    model = make_model(seed=seed)
    with Precision(forward=fmt, backward=fmt):
        activations = [lnsnet.tensor(images)]
        for layer in model:  # what Sequential does, keeping every output
            activations.append(layer(activations[-1]))
        loss = lnsnet.cross_entropy(activations[-1], labels)
        loss.backward()
        ref_loss, ref_grads = float_reference(model, [a.numpy() for a in activations], labels, fmt)
    loss_error = abs(loss.item() - ref_loss) / ref_loss
    grad_errors = {name: float(np.linalg.norm(p.grad.numpy() - ref_grads[id(p)]) / np.linalg.norm(ref_grads[id(p)]))
                   for name, p in model.named_parameters()}
    return loss_error, grad_errors


# Stated bounds on relative errors against float64 (L2 norm over each
# parameter's gradient; the loss value).  One rounding moves a value by at
# most r = 2**(0.5/gamma) - 1: 3.4e-4 at 16 bits (gamma 1024), 4.4% at 8 bits
# (gamma 8), and by about r/2 in RMS.  A gradient element sums many terms
# whose rounding errors are independent, so its relative error stays at the
# scale of a rounding; along the network it meets about a dozen roundings
# (forward outputs, backward errors, the weights' own), which add in
# quadrature: sqrt(12) * r/2 = 1.7 r, i.e. 6e-4 at 16 bits and 7.6% at 8 bits.
# The bounds allow about twice that (measured: 16 bits <= 4.4e-4, 8 bits
# <= 7.9% over seeds 0-2); at 8 bits, values below the 2**-15.75 window also
# flush.  The loss is one value, rounded once at the end: r plus what the
# logits bring.
GRAD_BOUNDS = {F16: 1.5e-3, F8: 0.15}
LOSS_BOUNDS = {F16: 1e-3, F8: 0.1}


@pytest.mark.parametrize("fmt", [pytest.param(F16, id="16bit"), pytest.param(F8, id="8bit")])
@pytest.mark.parametrize("make_model", [nn.mlp, nn.lenet], ids=["mlp", "lenet"])
def test_ready_models_match_float64(make_model, fmt):
    loss_error, grad_errors = model_errors(make_model, fmt)
    assert loss_error <= LOSS_BOUNDS[fmt], loss_error
    assert max(grad_errors.values()) <= GRAD_BOUNDS[fmt], grad_errors


def test_ready_models_shapes():
    x = lnsnet.tensor(np.zeros((3, 1, 28, 28)))
    with lnsnet.no_grad():
        assert nn.mlp()(x).shape == (3, 10)
        assert nn.lenet()(x).shape == (3, 10)
        assert nn.mlp()(lnsnet.tensor(np.zeros((3, 784)))).shape == (3, 10)
