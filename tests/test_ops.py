"""Every op's forward value and gradients against float64 references written here.

Each check decodes the op's LNS inputs, runs the float64 reference on those
exact values, and measures the op's result in LNS steps:
|x - gamma * log2|reference||, the distance of the result's exponent from the
exact one (entries may be flushed to zero only where the reference lies
below the result's B-bit window).  Gradients are checked by a random
projection: out.backward(G) for a random G in the backward format, against
the reference vector-Jacobian product with the decoded G.

Bounds, in LNS steps:
- ONE_ROUNDING = 0.5 + 0.01.  Every op here rounds each result once: the
  kernels compute the exact value (exponent sums for products; the linear
  accumulator sums exactly in integers) and round to nearest in the log
  domain (half a step; ⊕'s tables are themselves rounded to nearest).  The
  0.01 covers the POW2/BOUND tables (2**-25 relative: 5e-5 steps at gamma
  2**10) and the float64 reference's own rounding.  The bound is the same at
  8 and 16 bits; what 8 bits adds is the narrow window (126 steps), whose
  underflow flushes to zero, which `lns_steps` allows only below the window.
- EXACT (1e-6, the float64 log2's noise): selections, moves and sign flips, and products whose exact
  exponent sum fits the format, round nothing.
- Dividing by a count n (mean, avg pool, the loss's batch mean) adds the
  rounding of n's exponent, |round(gamma log2 n) - gamma log2 n|, computed
  by the test.
- Two roundings in a row (the batched matmul whose batch axes were broadcast
  sums already-rounded products; overlapping avg pool windows add with ⊕)
  are checked on positive data, where relative errors cannot grow by
  cancellation: each rounding adds at most half a step.
- The loss: see test_cross_entropy.

The `measure_*` functions return the worst errors; the tests hold them to
the bounds (and tools can call them to print the table).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import lnsnet
from lnsnet import LNSFormat, ops
from lnsnet.ops import conv as conv_module
from lnsnet.ops import window as window_module
from lnsnet.ops.loss import inner_gamma
from lnsnet.ops.reduce import count_exponent
from lnsnet.precision import Precision

F16 = LNSFormat(16, 1024)
F8 = LNSFormat(8, 8)
FORMATS = [pytest.param(F16, id="16bit"), pytest.param(F8, id="8bit")]

ONE_ROUNDING = 0.5 + 0.01
EXACT = 1e-6  # nothing rounded: only the float64 reference's own log2 error


# ---- measuring ---------------------------------------------------------------------
def lns_steps(out: lnsnet.Tensor, reference) -> float:
    """Worst distance in LNS steps of out's exponents from the exact ones of reference."""
    reference = np.broadcast_to(np.asarray(reference, dtype=np.float64), out.shape)
    gamma = out.fmt.gamma
    # The window's bottom edge (t - span) less half a step rounds to the edge;
    # anything further down may flush.  One step of margin for the rounding.
    lowest = 2.0 ** ((out.scale - out.fmt.span) / gamma)
    flushed = out.sign == 0
    wrong_zero = flushed & (np.abs(reference) > lowest)
    assert not wrong_zero.any(), (
        f"{int(wrong_zero.sum())} zero result(s) where the reference is {reference[wrong_zero][:5]}")
    kept = ~flushed
    assert (np.sign(reference[kept]) == out.sign[kept]).all(), "sign differs from the reference"
    errors = np.abs(out.exp[kept] - gamma * np.log2(np.abs(reference[kept])))
    return float(errors.max(initial=0.0))


def count_rounding(n: int, gamma: int) -> float:
    """How far the exponent of n used to divide by n is from the exact one, in steps."""
    return abs(count_exponent(n, gamma) - gamma * math.log2(n))


def random_tensor(rng, shape, fmt, low=-2.0, high=2.0, positive=False, requires_grad=True):
    """Magnitudes 2**U(low, high), random signs (or positive): well inside an 8-bit window."""
    values = np.exp2(rng.uniform(low, high, size=shape))
    if not positive:
        values *= rng.choice([-1.0, 1.0], size=shape)
    return lnsnet.tensor(values, fmt=fmt, requires_grad=requires_grad)


def project(out: lnsnet.Tensor, rng, positive=False) -> np.ndarray:
    """Backpropagate a random G from out; return G decoded."""
    g = random_tensor(rng, out.shape, out.fmt, positive=positive, requires_grad=False)
    out.backward(g)
    return g.numpy()


def at(fmt):
    return Precision(forward=fmt, backward=fmt)


# ---- float64 references ----------------------------------------------------------------
def unbroadcast(grad: np.ndarray, shape) -> np.ndarray:
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


def conv_reference(x, w, b, stride, padding):
    """Direct cross-correlation, one kernel offset at a time."""
    (sh, sw), (ph, pw) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    _, _, kh, kw = w.shape
    ho = (xp.shape[2] - kh) // sh + 1
    wo = (xp.shape[3] - kw) // sw + 1
    out = np.zeros((x.shape[0], w.shape[0], ho, wo))
    for u in range(kh):
        for v in range(kw):
            patch = xp[:, :, u:u + (ho - 1) * sh + 1:sh, v:v + (wo - 1) * sw + 1:sw]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, u, v])
    if b is not None:
        out += b[None, :, None, None]
    return out


def conv_reference_grads(x, w, g, stride, padding):
    (sh, sw), (ph, pw) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    gxp = np.zeros_like(xp)
    gw = np.zeros_like(w)
    _, _, kh, kw = w.shape
    ho, wo = g.shape[2:]
    for u in range(kh):
        for v in range(kw):
            spots = (slice(None), slice(None), slice(u, u + (ho - 1) * sh + 1, sh), slice(v, v + (wo - 1) * sw + 1, sw))
            gxp[spots] += np.einsum("nohw,oc->nchw", g, w[:, :, u, v])
            gw[:, :, u, v] = np.einsum("nohw,nchw->oc", g, xp[spots])
    return gxp[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]], gw, g.sum(axis=(0, 2, 3))


def pool_windows(x, k, s):
    (kh, kw), (sh, sw) = k, s
    ho = (x.shape[2] - kh) // sh + 1
    wo = (x.shape[3] - kw) // sw + 1
    return [((u, v), x[:, :, u:u + (ho - 1) * sh + 1:sh, v:v + (wo - 1) * sw + 1:sw])
            for u in range(kh) for v in range(kw)]


def max_pool_reference(x, k, s, g):
    """Forward, and the gradient routed to the first maximum of each window."""
    parts = pool_windows(x, k, s)
    stacked = np.stack([p for _, p in parts])
    winner = stacked.argmax(axis=0)
    gx = np.zeros_like(x)
    for i, ((u, v), p) in enumerate(parts):
        spots = (slice(None), slice(None), slice(u, u + (p.shape[2] - 1) * s[0] + 1, s[0]),
                 slice(v, v + (p.shape[3] - 1) * s[1] + 1, s[1]))
        gx[spots] += np.where(winner == i, g, 0.0)
    return stacked.max(axis=0), gx


def avg_pool_reference(x, k, s, g):
    parts = pool_windows(x, k, s)
    size = k[0] * k[1]
    gx = np.zeros_like(x)
    for (u, v), p in parts:
        spots = (slice(None), slice(None), slice(u, u + (p.shape[2] - 1) * s[0] + 1, s[0]),
                 slice(v, v + (p.shape[3] - 1) * s[1] + 1, s[1]))
        gx[spots] += g / size
    return sum(p for _, p in parts) / size, gx


def cross_entropy_reference(logits, labels, g):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_total = np.log(np.exp(shifted).sum(axis=1))
    rows = np.arange(len(labels))
    loss = (log_total - shifted[rows, labels]).mean()
    softmax = np.exp(shifted - log_total[:, None])
    onehot = np.zeros_like(logits)
    onehot[rows, labels] = 1.0
    return loss, (softmax - onehot) / len(labels) * g


# ---- measurements ----------------------------------------------------------------------------
def measure_elementwise(fmt, seed=0):
    rng = np.random.default_rng(seed)
    errors = {}
    cases = {
        "add": (ops.add, lambda a, b: a + b, lambda a, b, g: (g, g)),
        "sub": (ops.sub, lambda a, b: a - b, lambda a, b, g: (g, -g)),
        "mul": (ops.mul, lambda a, b: a * b, lambda a, b, g: (g * b, g * a)),
        "div": (ops.div, lambda a, b: a / b, lambda a, b, g: (g / b, -g * a / b ** 2)),
    }
    with at(fmt):
        for name, (op, ref, ref_grads) in cases.items():
            for shape_a, shape_b in (((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1))):
                a = random_tensor(rng, shape_a, fmt)
                b = random_tensor(rng, shape_b, fmt)
                out = op(a, b)
                va, vb = a.numpy(), b.numpy()
                fwd = lns_steps(out, ref(va, vb))
                g = project(out, rng)
                ga, gb = ref_grads(va, vb, g)
                grad = max(lns_steps(a.grad, unbroadcast(ga, shape_a)), lns_steps(b.grad, unbroadcast(gb, shape_b)))
                errors[name] = max(errors.get(name, (0, 0))[0], fwd), max(errors.get(name, (0, 0))[1], grad)
        x = random_tensor(rng, (3, 4), fmt)
        out = ops.neg(x)
        fwd = lns_steps(out, -x.numpy())
        g = project(out, rng)
        errors["neg"] = fwd, lns_steps(x.grad, -g)
    return errors


def measure_matmul(fmt, seed=1):
    rng = np.random.default_rng(seed)
    errors = {}
    with at(fmt):
        for name, shape_a, shape_b, positive in (("matmul", (5, 7), (7, 3), False),
                                                 ("matmul_batched", (2, 5, 7), (2, 7, 3), False),
                                                 ("matmul_broadcast", (2, 5, 7), (7, 3), True)):
            a = random_tensor(rng, shape_a, fmt, positive=positive)
            b = random_tensor(rng, shape_b, fmt, positive=positive)
            out = a @ b
            va, vb = a.numpy(), b.numpy()
            fwd = lns_steps(out, va @ vb)
            g = project(out, rng, positive=positive)
            ga = unbroadcast(g @ np.swapaxes(vb, -1, -2), shape_a)
            gb = unbroadcast(np.swapaxes(va, -1, -2) @ g, shape_b)
            errors[name] = fwd, max(lns_steps(a.grad, ga), lns_steps(b.grad, gb))
        for bias in (True, False):
            x = random_tensor(rng, (6, 9), fmt)
            w = random_tensor(rng, (4, 9), fmt)
            b = random_tensor(rng, (4,), fmt) if bias else None
            out = ops.linear(x, w, b)
            vx, vw = x.numpy(), w.numpy()
            ref = vx @ vw.T + (b.numpy() if bias else 0.0)
            fwd = lns_steps(out, ref)
            g = project(out, rng)
            grad = max(lns_steps(x.grad, g @ vw), lns_steps(w.grad, g.T @ vx))
            if bias:
                grad = max(grad, lns_steps(b.grad, g.sum(axis=0)))
            errors["linear" if bias else "linear_nobias"] = fwd, grad
    return errors


def measure_reduce(fmt, seed=2):
    rng = np.random.default_rng(seed)
    errors = {}
    with at(fmt):
        for axis, keepdims in ((None, False), (1, False), ((0, 2), True)):
            for name in ("sum", "mean"):
                x = random_tensor(rng, (3, 5, 4), fmt)
                out = getattr(x, name)(axis=axis, keepdims=keepdims)
                vx = x.numpy()
                fwd = lns_steps(out, getattr(vx, name)(axis=axis, keepdims=keepdims))
                g = project(out, rng)
                g_full = np.broadcast_to(g if keepdims or axis is None else np.expand_dims(g, axis), vx.shape)
                n = vx.size // out.size
                ref_grad = g_full / n if name == "mean" else g_full
                errors.setdefault(name, [])
                errors[name].append((fwd, lns_steps(x.grad, ref_grad), n))
    return errors


def measure_shape_and_activation(fmt, seed=3):
    rng = np.random.default_rng(seed)
    errors = {}
    with at(fmt):
        cases = {
            "reshape": (lambda t: t.reshape(6, -1), lambda v: v.reshape(6, -1), lambda v, g: g.reshape(v.shape)),
            "flatten": (lambda t: t.flatten(1), lambda v: v.reshape(3, -1), lambda v, g: g.reshape(v.shape)),
            "transpose": (lambda t: t.transpose(2, 0, 1), lambda v: v.transpose(2, 0, 1),
                          lambda v, g: g.transpose(1, 2, 0)),
            "relu": (ops.relu, lambda v: np.maximum(v, 0), lambda v, g: np.where(v > 0, g, 0.0)),
            "leaky_relu": (lambda t: ops.leaky_relu(t, 0.1), lambda v: np.where(v > 0, v, 0.1 * v),
                           lambda v, g: np.where(v > 0, g, 0.1 * g)),
        }
        for name, (op, ref, ref_grad) in cases.items():
            x = random_tensor(rng, (3, 4, 5), fmt)
            out = op(x)
            vx = x.numpy()
            fwd = lns_steps(out, ref(vx))
            g = project(out, rng)
            errors[name] = fwd, lns_steps(x.grad, ref_grad(vx, g))
        x = random_tensor(rng, (3, 4), LNSFormat(24, 2 ** 14))  # finer than both formats
        out = x.to(fmt)
        fwd = lns_steps(out, x.numpy())
        g = project(out, rng)
        errors["cast"] = fwd, lns_steps(x.grad, g)
    return errors


CONV_CASES = [  # (x shape, w shape, stride, padding, bias)
    ((2, 3, 7, 7), (4, 3, 3, 3), (1, 1), (0, 0), True),
    ((2, 2, 8, 7), (3, 2, 3, 2), (2, 1), (1, 2), True),
    ((1, 1, 9, 9), (2, 1, 5, 5), (2, 2), (2, 2), False),
]


def measure_conv(fmt, seed=4):
    rng = np.random.default_rng(seed)
    fwd = grad = 0.0
    with at(fmt):
        for x_shape, w_shape, stride, padding, bias in CONV_CASES:
            x = random_tensor(rng, x_shape, fmt, low=-1, high=1)
            w = random_tensor(rng, w_shape, fmt, low=-1, high=1)
            b = random_tensor(rng, w_shape[:1], fmt) if bias else None
            out = ops.conv2d(x, w, b, stride=stride, padding=padding)
            vx, vw = x.numpy(), w.numpy()
            fwd = max(fwd, lns_steps(out, conv_reference(vx, vw, b.numpy() if bias else None, stride, padding)))
            g = project(out, rng)
            gx, gw, gb = conv_reference_grads(vx, vw, g, stride, padding)
            grad = max(grad, lns_steps(x.grad, gx), lns_steps(w.grad, gw))
            if bias:
                grad = max(grad, lns_steps(b.grad, gb))
    return {"conv2d": (fwd, grad)}


def measure_pool(fmt, seed=5):
    rng = np.random.default_rng(seed)
    errors = {}
    with at(fmt):
        for name, kernel, stride in (("max_pool2d", (2, 2), (2, 2)), ("max_pool2d_overlap", (3, 3), (2, 2))):
            x = random_tensor(rng, (2, 3, 7, 8), fmt)
            out = ops.max_pool2d(x, kernel, stride)
            ref, _ = max_pool_reference(x.numpy(), kernel, stride, 0.0)
            fwd = lns_steps(out, ref)
            g_values = project(out, rng, positive=name.endswith("overlap"))
            _, gx = max_pool_reference(x.numpy(), kernel, stride, g_values)
            errors[name] = fwd, lns_steps(x.grad, gx)
        for name, kernel, stride in (("avg_pool2d", (2, 2), (2, 2)), ("avg_pool2d_overlap", (3, 3), (1, 1))):
            overlap = name.endswith("overlap")
            x = random_tensor(rng, (2, 3, 6, 7), fmt, positive=overlap)
            out = ops.avg_pool2d(x, kernel, stride)
            ref, _ = avg_pool_reference(x.numpy(), kernel, stride, 0.0)
            fwd = lns_steps(out, ref)
            g_values = project(out, rng, positive=overlap)
            _, gx = avg_pool_reference(x.numpy(), kernel, stride, g_values)
            errors[name] = fwd, lns_steps(x.grad, gx)
    return errors


def measure_cross_entropy(fmt, seed=6, batch=12, classes=10):
    rng = np.random.default_rng(seed)
    with at(fmt):
        logits = random_tensor(rng, (batch, classes), fmt, low=-3, high=2)
        labels = rng.integers(0, classes, size=batch)
        loss = ops.cross_entropy(logits, labels)
        g = project(loss, rng, positive=True)
        ref_loss, ref_grad = cross_entropy_reference(logits.numpy(), labels, g)
        return {"cross_entropy": (lns_steps(loss, ref_loss), lns_steps(logits.grad, ref_grad))}


# ---- the tests ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_elementwise(fmt):
    errors = measure_elementwise(fmt)
    assert errors["add"][0] <= ONE_ROUNDING and errors["sub"][0] <= ONE_ROUNDING
    assert errors["mul"][0] <= EXACT and errors["div"][0] <= EXACT  # exact exponent sums
    for name in ("add", "sub", "mul", "div"):
        # The operands' full-shape gradients are exact; reducing a broadcast one is one rounding.
        assert errors[name][1] <= ONE_ROUNDING, (name, errors[name])
    assert max(errors["neg"]) <= EXACT


@pytest.mark.parametrize("fmt", FORMATS)
def test_matmul_and_linear(fmt):
    errors = measure_matmul(fmt)
    for name in ("matmul", "matmul_batched", "linear", "linear_nobias"):
        assert max(errors[name]) <= ONE_ROUNDING, (name, errors[name])
    fwd, grad = errors["matmul_broadcast"]
    assert fwd <= ONE_ROUNDING
    assert grad <= 2 * ONE_ROUNDING  # per-batch products rounded, then summed over the batch


@pytest.mark.parametrize("fmt", FORMATS)
def test_sum_and_mean(fmt):
    errors = measure_reduce(fmt)
    for fwd, grad, _ in errors["sum"]:
        assert fwd <= ONE_ROUNDING and grad <= EXACT
    for fwd, grad, n in errors["mean"]:
        assert fwd <= ONE_ROUNDING + count_rounding(n, fmt.gamma)
        assert grad <= count_rounding(n, fmt.gamma) + 0.01


@pytest.mark.parametrize("fmt", FORMATS)
def test_shape_ops_and_activations(fmt):
    errors = measure_shape_and_activation(fmt)
    for name in ("reshape", "flatten", "transpose", "relu"):
        assert max(errors[name]) <= EXACT, (name, errors[name])
    slope_rounding = abs(round(fmt.gamma * math.log2(0.1)) - fmt.gamma * math.log2(0.1))
    assert max(errors["leaky_relu"]) <= slope_rounding + 0.01
    fwd, grad = errors["cast"]
    assert fwd <= ONE_ROUNDING and grad <= EXACT


@pytest.mark.parametrize("fmt", FORMATS)
def test_conv2d(fmt):
    fwd, grad = measure_conv(fmt)["conv2d"]
    assert fwd <= ONE_ROUNDING and grad <= ONE_ROUNDING


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1)])
def test_conv2d_input_gradient_in_image_blocks(stride, padding, monkeypatch):
    """The input gradient unfolds a few images' windows at a time: the same integers as all at once."""
    rng = np.random.default_rng(stride)
    x_values, w_values = rng.standard_normal((5, 2, 7, 6)), rng.standard_normal((3, 2, 3, 3))

    def input_gradient():
        x = lnsnet.tensor(x_values, fmt=F8, requires_grad=True)
        w = lnsnet.tensor(w_values, fmt=F8)
        ops.sum(ops.conv2d(x, w, stride=stride, padding=padding)).backward()
        return x.grad.sign, x.grad.exp

    whole = input_gradient()
    monkeypatch.setattr(conv_module, "WINDOW_BUDGET", 1000)  # under one image: one per block
    blocks = input_gradient()
    np.testing.assert_array_equal(whole[0], blocks[0])
    np.testing.assert_array_equal(whole[1], blocks[1])


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1)])
def test_im2col_with_a_bias_column(stride, padding, monkeypatch):
    """conv2d's rows with their column of ones, written a few images at a time, are the
    windows with that column appended."""
    x = np.random.default_rng(3).integers(-50, 50, (5, 2, 7, 6)).astype(np.int32)
    plain = window_module.im2col(x, (3, 3), (stride, stride), (padding, padding))
    appended = np.concatenate([plain, np.full((len(plain), 1), 9, np.int32)], axis=1)
    for block in (window_module.IM2COL_BLOCK, 1):  # one image per block past the budget
        monkeypatch.setattr(window_module, "IM2COL_BLOCK", block)
        rows = window_module.im2col(x, (3, 3), (stride, stride), (padding, padding), extra=1, fill=9)
        assert rows.dtype == x.dtype
        np.testing.assert_array_equal(rows, appended)


@pytest.mark.parametrize("fmt", FORMATS)
def test_pools(fmt):
    errors = measure_pool(fmt)
    assert max(errors["max_pool2d"]) <= EXACT
    fwd, grad = errors["max_pool2d_overlap"]
    # An input can win up to 4 of these windows: 3 ⊕ of positive gradients.
    assert fwd <= EXACT and grad <= 3 * ONE_ROUNDING
    assert max(errors["avg_pool2d"]) <= ONE_ROUNDING  # dividing by 4 is exact
    fwd, grad = errors["avg_pool2d_overlap"]
    nine = count_rounding(9, fmt.gamma)
    assert fwd <= ONE_ROUNDING + nine
    # Up to 9 window gradients meet at an input with 8 ⊕ (positive data).
    assert grad <= 8 * ONE_ROUNDING + nine


@pytest.mark.parametrize("fmt", FORMATS)
def test_cross_entropy(fmt):
    fwd, grad = measure_cross_entropy(fmt)["cross_entropy"]
    # The softmax runs at an inner gamma at least 16 times finer; its few
    # roundings (exp, the sums, the batch size's exponent, the logits' fixed
    # point) add up to at most 2 inner steps, before the result's own rounding.
    inner = 2 * fmt.gamma / inner_gamma(fmt.gamma)
    assert fwd <= ONE_ROUNDING + inner
    assert grad <= ONE_ROUNDING + inner


def test_cross_entropy_confident_label_gradient():
    """softmax - 1 at the label is computed as -S'/S: accurate even when the model is sure."""
    with at(F16):
        logits = lnsnet.tensor([[12.0, 0.0, -1.0], [0.5, 0.25, 9.0]], fmt=F16, requires_grad=True)
        loss = ops.cross_entropy(logits, np.array([0, 2]))
        loss.backward()
        _, ref = cross_entropy_reference(logits.numpy(), np.array([0, 2]), 1.0)
        assert lns_steps(logits.grad, ref) <= ONE_ROUNDING + 2 * F16.gamma / inner_gamma(F16.gamma)


def test_accumulation_mode_reaches_the_kernels(monkeypatch):
    seen = []
    real = lnsnet.kernels.matmul

    def spy(*args, **kwargs):
        seen.append(args[-1] if len(args) == 6 else kwargs["mode"])
        return real(*args, **kwargs)

    monkeypatch.setattr(lnsnet.kernels, "matmul", spy)
    rng = np.random.default_rng(7)
    for mode in ("logadd", "mitchell", "linear"):
        a = random_tensor(rng, (3, 4), F8)
        b = random_tensor(rng, (4, 2), F8)
        with lnsnet.precision(accumulate=mode):
            out = (a @ b).sum()
        out.backward()  # after the block: backward uses the mode its ops recorded
        assert set(seen) == {mode}
        seen.clear()


def test_logadd_mode_matches_sequential_add():
    rng = np.random.default_rng(8)
    a = random_tensor(rng, (2, 5), F8, requires_grad=False)
    b = random_tensor(rng, (5, 1), F8, requires_grad=False)
    with lnsnet.precision(accumulate="logadd"):
        out = a @ b
    acc_s, acc_x = np.zeros(2, np.int8), np.zeros(2, np.int64)
    for k in range(5):
        s, x = lnsnet.kernels.mul(a.sign[:, k], a.exp[:, k], b.sign[k, 0], b.exp[k, 0])
        acc_s, acc_x = lnsnet.kernels.add(acc_s, acc_x, s, x, F8.tables)
    expected_s, expected_x, _ = F8.requantize(acc_s, acc_x)
    assert (out.sign[:, 0] == expected_s).all() and (out.exp[:, 0] == expected_x).all()


# ---- wrong shapes ----------------------------------------------------------------------------------
def test_shape_errors_name_the_shapes():
    rng = np.random.default_rng(9)
    a = random_tensor(rng, (2, 3), F8)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        a + random_tensor(rng, (4,), F8)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 3\)"):
        a @ random_tensor(rng, (2, 3), F8)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        a @ random_tensor(rng, (4,), F8)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        ops.linear(a, random_tensor(rng, (4, 5), F8))
    with pytest.raises(ValueError, match=r"\(1, 2, 6, 6\).*\(3, 1, 3, 3\)"):
        ops.conv2d(random_tensor(rng, (1, 2, 6, 6), F8), random_tensor(rng, (3, 1, 3, 3), F8))
    with pytest.raises(ValueError, match=r"\(1, 1, 2, 2\).*\(3, 1, 3, 3\)"):
        ops.conv2d(random_tensor(rng, (1, 1, 2, 2), F8), random_tensor(rng, (3, 1, 3, 3), F8))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        a.reshape(4)
    with pytest.raises(ValueError, match=r"\(1, 1, 1, 5\)"):
        ops.max_pool2d(random_tensor(rng, (1, 1, 1, 5), F8), 2)


def test_label_errors_name_the_labels():
    rng = np.random.default_rng(10)
    logits = random_tensor(rng, (3, 4), F8)
    with pytest.raises(ValueError, match=r"outside 0\.\.3.*\[-1, 7\]"):
        ops.cross_entropy(logits, np.array([0, 7, -1]))
    with pytest.raises(ValueError, match=r"\(2,\).*\(3, 4\)"):
        ops.cross_entropy(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match="integers"):
        ops.cross_entropy(logits, np.array([0.0, 1.0, 2.0]))


def test_mixed_formats_are_an_error():
    rng = np.random.default_rng(11)
    with pytest.raises(ValueError, match="different formats"):
        random_tensor(rng, (2,), F8) * random_tensor(rng, (2,), F16)
