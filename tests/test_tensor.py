"""The tensor value type: encoding, decoding, arithmetic requantized to the format, errors."""
from __future__ import annotations

import numpy as np
import pytest

import lnsnet
from lnsnet import LNSFormat, Tensor

F8 = LNSFormat(8, 8)
F16 = LNSFormat(16, 1024)


def exact_steps(t: Tensor, reference, kept) -> np.ndarray:
    """Distance in LNS steps of t's exponents from those of the reference values, where kept."""
    reference = np.asarray(reference, dtype=np.float64)
    return np.abs(t.exp[kept] - t.fmt.gamma * np.log2(np.abs(reference[kept])))


@pytest.mark.parametrize("fmt", [F8, F16, LNSFormat(4, 1), LNSFormat(12, 64)])
def test_encode_decode_round_trip_within_half_a_step(fmt):
    rng = np.random.default_rng(0)
    values = rng.choice([-1.0, 1.0], 200) * np.exp2(rng.uniform(-3, 3, 200))
    t = lnsnet.tensor(values, fmt=fmt)
    assert t.sign.dtype == np.int8 and t.exp.dtype == np.int32 and t.fmt == fmt
    kept = t.sign != 0  # a 4-bit format spans only 6 steps: the smallest values flush
    assert (t.sign[kept] == np.sign(values[kept])).all()
    assert exact_steps(t, values, kept).max() <= 0.5 + 1e-9
    np.testing.assert_allclose(np.abs(t.numpy()[kept]), np.exp2(t.exp[kept] / fmt.gamma))
    assert t.scale == t.exp[kept].max()
    assert (t.exp[kept] >= t.scale - fmt.span).all()


def test_default_format_is_the_forward_format_in_effect():
    assert lnsnet.tensor([1.0]).fmt == LNSFormat(8, 8)
    with lnsnet.precision(forward=LNSFormat(6, 4)):
        assert lnsnet.tensor([1.0]).fmt == LNSFormat(6, 4)
    assert lnsnet.tensor([1.0]).fmt == LNSFormat(8, 8)


def test_zero_and_the_window():
    t = lnsnet.tensor([0.0, 1.0, 2.0 ** -20, -0.0], fmt=F8)
    # 2**-20 lies below the 8-bit window [2**-15.75, 1]: it flushes to zero.
    assert t.sign.tolist() == [0, 1, 0, 0]
    assert t.numpy().tolist() == [0.0, 1.0, 0.0, 0.0]


def test_nan_and_inf_name_the_count_and_first_position():
    with pytest.raises(ValueError, match=r"2 non-finite.*\(1, 0\)"):
        lnsnet.tensor([[1.0, 2.0], [np.nan, np.inf]])


@pytest.mark.parametrize("fmt", [F8, F16])
def test_arithmetic_is_lns_and_requantized(fmt):
    rng = np.random.default_rng(1)
    with lnsnet.precision(forward=fmt):
        a = lnsnet.tensor(rng.uniform(0.5, 2, (3, 4)) * rng.choice([-1, 1], (3, 4)))
        b = lnsnet.tensor(rng.uniform(0.5, 2, (3, 4)))
        c = lnsnet.tensor(rng.uniform(0.5, 2, (4, 2)))
    va, vb, vc = a.numpy(), b.numpy(), c.numpy()
    for result, reference, bound in ((a + b, va + vb, 0.5), (a - b, va - vb, 0.5), (a * b, va * vb, 0.0),
                                     (a / b, va / vb, 0.0), (a @ c, va @ vc, 0.5)):
        assert result.fmt == fmt and result.sign.dtype == np.int8 and result.exp.dtype == np.int32
        kept = result.sign != 0
        assert (result.sign[kept] == np.sign(reference[kept])).all()
        # Each result is rounded once (bound + table precision); mul/div are exact.
        assert exact_steps(result, reference, kept).max() <= bound + 0.01
        assert result.scale == result.exp[kept].max()
        assert (result.exp[kept] >= result.scale - fmt.span).all()


def test_large_values_do_not_wrap():
    big = lnsnet.tensor([2.0 ** 100, 2.0 ** 100], fmt=F8)
    total = big.sum()
    assert total.sign == 1 and total.exp == 8 * 101


def test_scalars_are_encoded_in_the_tensor_format():
    x = lnsnet.tensor([1.0, 2.0, 4.0], fmt=F16)
    assert np.allclose((x * 2).numpy(), [2, 4, 8])
    assert np.allclose((2 - x).numpy(), [1, 0, -2])
    assert np.allclose((1 / x).numpy(), [1, 0.5, 0.25])
    assert (x * 2).fmt == F16


def test_exact_cancellation_is_zero():
    x = lnsnet.tensor([3.0, -1.5])
    assert (x - x).sign.tolist() == [0, 0]


def test_shape_errors_name_both_shapes():
    a = lnsnet.tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(2,\)"):
        a + lnsnet.tensor(np.ones(2))
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(2, 3\)"):
        a @ a
    with pytest.raises(ValueError, match=r"\(2, 3, 4\) and \(2, 5, 6\)"):
        lnsnet.tensor(np.ones((2, 3, 4))) @ lnsnet.tensor(np.ones((2, 5, 6)))


def test_division_by_an_lns_zero_is_an_error():
    with pytest.raises(ZeroDivisionError):
        lnsnet.tensor([1.0]) / lnsnet.tensor([0.0])


def test_matmul_vector_shapes_follow_numpy():
    m = lnsnet.tensor(np.ones((3, 4)))
    v = lnsnet.tensor(np.ones(4))
    w = lnsnet.tensor(np.ones(3))
    assert (m @ v).shape == (3,)
    assert (w @ m).shape == (4,)
    assert (v @ v).shape == () and (v @ v).item() == 4.0
    assert (lnsnet.tensor(np.ones((2, 3, 4))) @ lnsnet.tensor(np.ones((4, 5)))).shape == (2, 3, 5)


def test_constructor_takes_integer_arrays_only():
    with pytest.raises(ValueError, match="integer"):
        Tensor(np.ones(3), np.zeros(3, np.int32), F8)
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        Tensor(np.ones(3, np.int8), np.zeros(2, np.int32), F8)
    with pytest.raises(ValueError, match="quantize"):
        Tensor(np.ones(1, np.int8), np.array([F8.limit + 1], np.int64), F8)
    t = Tensor(np.array([1, -1, 0], np.int8), np.array([8, -8, 0], np.int64), F8)
    assert t.exp.dtype == np.int32 and t.scale == 8
    assert t.numpy().tolist() == [2.0, -0.5, 0.0]


def test_item_detach_argmax_and_repr():
    t = lnsnet.tensor([[1.0, -3.0, 2.0]], requires_grad=True)
    with pytest.raises(ValueError, match="3 elements"):
        t.item()
    assert t.sum().item() == pytest.approx(0.0, abs=0.1)
    d = t.detach()
    assert not d.requires_grad and d.sign is t.sign and d.exp is t.exp
    assert t.argmax(axis=1).tolist() == [2]
    assert "fmt=LNSFormat(bits=8, gamma=8)" in repr(t) and "requires_grad=True" in repr(t)


def test_to_another_format_rescales_exactly_when_finer():
    x = lnsnet.tensor([1.5, -0.25], fmt=F8)
    y = x.to(F16)
    assert y.fmt == F16 and (y.exp == x.exp * 128).all() and (y.sign == x.sign).all()
    assert x.to(F8) is x
