"""Overflow and underflow saturate or flush as the format says, and never wrap.

format.requantize is held to an exact Python-integer model of DESIGN.md
section 1 (rescale with rounding, then: above t saturates to t, below
t - span, or -limit for windows wider than the engine's range, flushes to
zero or saturates to that bound) on exponents anywhere in
int64 and uint64, the int32 bounds and +-limit included; every result is
then representable in B bits (pack/unpack round-trips it).  Ops on tensors
sitting at +-limit give results at +-limit, with the right sign, instead of
wrapping.

Fuzz cases: 1 property, 400 examples (its max_examples).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lnsnet import ops
from lnsnet.format import LNSFormat
from lnsnet.precision import Precision
from lnsnet.tensor import Tensor

FORMATS = [LNSFormat(8, 8), LNSFormat(4, 1), LNSFormat(16, 1024), LNSFormat(12, 256),
           LNSFormat(32, 2 ** 16), LNSFormat(2, 8)]
INT32, INT64 = np.iinfo(np.int32), np.iinfo(np.int64)
FUZZ = settings(deadline=None)


def exact_requantize(sign, exp, fmt: LNSFormat, t, underflow: str, src_gamma):
    """DESIGN.md section 1 in Python integers: nothing can overflow here."""
    shift = (src_gamma or fmt.gamma).bit_length() - fmt.gamma.bit_length()
    xs = [int(x) for x in np.ravel(exp)]
    xs = [(x + (1 << (shift - 1))) >> shift if shift > 0 else x << -shift for x in xs]
    signs = [int(s) for s in np.ravel(sign)]
    if t is None:
        t = max((x for s, x in zip(signs, xs) if s), default=0)
    t = min(max(t, -fmt.limit + fmt.span), fmt.limit)
    low = max(t - fmt.span, -fmt.limit)
    out_s, out_x = [], []
    for s, x in zip(signs, xs):
        x = min(x, t)
        if s and x < low:
            s, x = (0, 0) if underflow == "flush" else (s, low)
        out_s.append(s)
        out_x.append(x if s else 0)
    return out_s, out_x, t


def exponent_arrays(fmt: LNSFormat):
    limit = fmt.limit
    near = st.one_of(st.integers(-limit - 3, -limit + 3), st.integers(limit - 3, limit + 3),
                     st.integers(-limit, limit), st.integers(-5, 5))
    int32 = st.one_of(near, st.sampled_from([INT32.min, INT32.min + 1, INT32.max - 1, INT32.max]))
    int64 = st.one_of(int32, st.integers(INT64.min, INT64.max), st.sampled_from([INT64.min, INT64.max]))
    uint64 = st.one_of(near.filter(lambda v: v >= 0), st.integers(0, 2 ** 64 - 1))
    shapes = hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=6)
    return st.one_of(hnp.arrays(np.int32, shapes, elements=int32),
                     hnp.arrays(np.int64, shapes, elements=int64),
                     hnp.arrays(np.uint64, shapes, elements=uint64),
                     hnp.arrays(np.int16, shapes))


@settings(FUZZ, max_examples=400)
@given(data=st.data(), fmt=st.sampled_from(FORMATS), underflow=st.sampled_from(["flush", "saturate"]))
def test_requantize_saturates_or_flushes_exactly(data, fmt, underflow):
    exp = data.draw(exponent_arrays(fmt), label="exp")
    sign = data.draw(hnp.arrays(np.int8, exp.shape, elements=st.sampled_from([-1, 0, 1])), label="sign")
    src_gamma = data.draw(st.sampled_from([None, 1, fmt.gamma * 4, max(fmt.gamma // 8, 1), 2 ** 16]))
    t = data.draw(st.one_of(st.none(), st.integers(-2 * fmt.limit, 2 * fmt.limit),
                            st.sampled_from([INT64.min, INT64.max, 2 ** 70])), label="t")
    got_s, got_x, got_t = fmt.requantize(sign, exp, t=t, underflow=underflow, src_gamma=src_gamma)
    want_s, want_x, want_t = exact_requantize(sign, exp, fmt, t, underflow, src_gamma)
    assert got_t == want_t
    assert got_s.ravel().tolist() == want_s
    assert got_x.ravel().tolist() == want_x
    # and the result is what B bits with scale t can hold
    back_s, back_x = fmt.unpack(fmt.pack(got_s, got_x, got_t), got_t)
    assert np.array_equal(back_s, got_s) and np.array_equal(back_x, got_x)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128, np.bool_, object])
def test_requantize_refuses_exponents_that_are_not_integers(dtype):
    """A float exponent of 1e30 used to become INT64_MIN, and its value zero."""
    with pytest.raises(ValueError, match="exponents must be integers"):
        LNSFormat(8, 8).requantize(np.ones(3, np.int8), np.array([1, 2, 3]).astype(dtype))


def at_limit(fmt: LNSFormat, signs) -> Tensor:
    signs = np.asarray(signs, np.int8)
    return Tensor(signs, np.full(signs.shape, fmt.limit, np.int32), fmt)


@pytest.mark.parametrize("fmt", [LNSFormat(8, 8), LNSFormat(16, 1024), LNSFormat(32, 2 ** 16)],
                         ids=repr)
def test_ops_at_the_limit_saturate(fmt):
    """The largest values a format holds, multiplied, added, summed and divided: the results stay
    at +-limit with the right sign (or flush to zero when they underflow), never wrap around."""
    with Precision(forward=fmt, backward=fmt):
        big = at_limit(fmt, [[1, -1], [-1, 1]])
        for result, want_sign in [
            (ops.mul(big, big), [[1, 1], [1, 1]]),
            (ops.add(big, big), [[1, -1], [-1, 1]]),
            (ops.matmul(big, big), [[1, -1], [-1, 1]]),
            (ops.sum(at_limit(fmt, np.ones((3, 40))), axis=1), [1, 1, 1]),
        ]:
            np.testing.assert_array_equal(result.sign, want_sign)
            assert (result.exp[result.sign != 0] == fmt.limit).all()
        tiny = Tensor(np.ones((1, 2), np.int8), np.full((1, 2), -fmt.limit, np.int32), fmt)
        product = ops.mul(tiny, tiny)        # 2**(-2 limit / gamma): below anything held
        assert (product.sign == 0).all() and (product.exp == 0).all()
        quotient = ops.div(big, tiny)        # 2**(2 limit / gamma): saturates
        np.testing.assert_array_equal(quotient.sign, [[1, -1], [-1, 1]])
        assert (quotient.exp == fmt.limit).all()
