"""One LNS number, for learning the arithmetic: `LNS(2.5) + LNS(0.3)`.

An LNS scalar is a sign s in {-1, 0, +1} and an integer exponent x in a
format (value = s * 2**(x/gamma)), exactly one element of an lnsnet tensor.
Every operation runs through lnsnet.kernels on one-element arrays, so a
scalar computes bit for bit what a tensor element would.

A lone number is its own tensor: its scale exponent t is its own exponent,
so the B-bit window never cuts it off; only the engine's exponent limit can
(results pass through LNSFormat.requantize: overflow saturates, underflow
flushes to zero).  The bit width matters when the number is packed into a
code beside others; `lnsnet explain` shows that.

Comparisons are between the exact values the numbers stand for: LNS(3.14)
is 2**(13/8) = 3.0844..., so it is not equal to the float 3.14.  In
arithmetic a plain number is first encoded in the other operand's format.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from lnsnet import kernels
from lnsnet.format import LNSFormat

DEFAULT_FORMAT = LNSFormat(bits=8, gamma=8)


def _one(value, dtype) -> np.ndarray:
    return np.array([value], dtype=dtype)


class LNS:
    """A signed LNS number: sign, exponent and format; immutable."""

    __slots__ = ("sign", "exp", "fmt")

    def __init__(self, value, fmt: LNSFormat = DEFAULT_FORMAT):
        if not isinstance(fmt, LNSFormat):
            raise TypeError(f"LNS: fmt must be an LNSFormat, got {fmt!r}")
        if isinstance(value, LNS):
            # Formats share the base when gammas are powers of two: moving
            # between them is a shift of the exponent (with rounding to a coarser one).
            sign, exp, _ = fmt.requantize(_one(value.sign, np.int8), _one(value.exp, np.int64),
                                          src_gamma=value.fmt.gamma)
            self._set(int(sign[0]), int(exp[0]), fmt)
            return
        if not isinstance(value, numbers.Real):
            raise TypeError(f"LNS: cannot make an LNS number from {type(value).__name__} {value!r}")
        try:
            as_float = float(value)
        except OverflowError:
            raise ValueError(f"LNS: an integer of {int(value).bit_length()} bits is too "
                             f"large for a float64") from None
        if not math.isfinite(as_float):
            raise ValueError(f"LNS: {as_float} is not a finite number (LNS has no NaN or infinity)")
        sign, exp = fmt.encode(_one(as_float, np.float64))
        self._set(int(sign[0]), int(exp[0]), fmt)

    @classmethod
    def from_parts(cls, sign: int, exp: int, fmt: LNSFormat = DEFAULT_FORMAT) -> "LNS":
        """The number sign * 2**(exp/gamma), kept within the engine's exponent limit."""
        if sign not in (-1, 0, 1):
            raise ValueError(f"LNS.from_parts: sign must be -1, 0 or +1, got {sign!r}")
        if isinstance(exp, bool) or not isinstance(exp, (int, np.integer)):
            raise ValueError(f"LNS.from_parts: exponent must be an integer, got {exp!r}")
        return cls._kept(_one(sign, np.int8), _one(exp, np.int64), fmt)

    @classmethod
    def _kept(cls, sign: np.ndarray, exp: np.ndarray, fmt: LNSFormat) -> "LNS":
        # t defaults to the number's own exponent, so only the engine limit applies.
        sign, exp, _ = fmt.requantize(np.asarray(sign, np.int8).reshape(1),
                                      np.asarray(exp, np.int64).reshape(1))
        number = cls.__new__(cls)
        number._set(int(sign[0]), int(exp[0]), fmt)
        return number

    def _set(self, sign: int, exp: int, fmt: LNSFormat):
        object.__setattr__(self, "sign", sign)
        object.__setattr__(self, "exp", exp if sign else 0)
        object.__setattr__(self, "fmt", fmt)

    def __setattr__(self, name, value):
        raise AttributeError("LNS numbers are immutable")

    # ---- views -------------------------------------------------------------
    def __float__(self) -> float:
        return float(self.fmt.decode(self.sign, self.exp))

    def __bool__(self) -> bool:
        return self.sign != 0

    def __repr__(self) -> str:
        return (f"LNS(sign={self.sign:+d}, exp={self.exp}, value={float(self):.7g}, "
                f"fmt={self.fmt!r})")

    def __str__(self) -> str:
        if self.sign == 0:
            return "0"
        return f"{'-' if self.sign < 0 else '+'}2^({self.exp}/{self.fmt.gamma})"

    def __hash__(self) -> int:
        # Equal numbers have equal values, and numbers equal to floats hash like them.
        return hash(float(self))

    # ---- arithmetic --------------------------------------------------------
    def _operand(self, other):
        """other as an LNS number in this format, or NotImplemented."""
        if isinstance(other, LNS):
            if other.fmt != self.fmt:
                raise ValueError(f"LNS: cannot combine {self.fmt} with {other.fmt}; "
                                 f"convert one first with LNS(x, fmt)")
            return other
        if isinstance(other, numbers.Real):
            return LNS(other, self.fmt)
        return NotImplemented

    def _binary(self, other, kernel, *, reflected=False, with_tables=False):
        other = self._operand(other)
        if other is NotImplemented:
            return NotImplemented
        a, b = (other, self) if reflected else (self, other)
        args = (_one(a.sign, np.int8), _one(a.exp, np.int64),
                _one(b.sign, np.int8), _one(b.exp, np.int64))
        sign, exp = kernel(*args, self.fmt.tables) if with_tables else kernel(*args)
        return LNS._kept(sign, exp, self.fmt)

    def __add__(self, other):
        return self._binary(other, kernels.add, with_tables=True)

    def __radd__(self, other):
        return self._binary(other, kernels.add, reflected=True, with_tables=True)

    def __sub__(self, other):
        return self._binary(other, kernels.sub, with_tables=True)

    def __rsub__(self, other):
        return self._binary(other, kernels.sub, reflected=True, with_tables=True)

    def __mul__(self, other):
        return self._binary(other, kernels.mul)

    def __rmul__(self, other):
        return self._binary(other, kernels.mul, reflected=True)

    def __truediv__(self, other):
        return self._binary(other, kernels.div)

    def __rtruediv__(self, other):
        return self._binary(other, kernels.div, reflected=True)

    def __neg__(self):
        return LNS._kept(_one(-self.sign, np.int8), _one(self.exp, np.int64), self.fmt)

    def __pos__(self):
        return self

    def __abs__(self):
        return LNS._kept(_one(abs(self.sign), np.int8), _one(self.exp, np.int64), self.fmt)

    def _unary(self, kernel) -> "LNS":
        sign, exp = kernel(_one(self.sign, np.int8), _one(self.exp, np.int64))
        return LNS._kept(sign, exp, self.fmt)

    def _integer_power(self, n: int) -> "LNS":
        """self ** n for n >= 0 by squaring: multiplications are exact, so no rounding."""
        result = LNS(1, self.fmt)
        base = self
        while n:
            if n & 1:
                result = result * base
            n >>= 1
            if n:
                base = base._unary(kernels.square)
        return result

    def __pow__(self, power):
        """Integer and half-integer powers: x**(k/2) = sqrt(x**k), rounded once."""
        if isinstance(power, bool) or not isinstance(power, numbers.Real):
            return NotImplemented
        if isinstance(power, numbers.Integral):
            k = 2 * int(power)
        else:
            twice = 2 * float(power)
            if not math.isfinite(twice) or twice != round(twice):
                raise ValueError(f"LNS ** {power!r}: only integer and half-integer powers are "
                                 f"exact table-free operations in LNS")
            k = int(twice)
        if self.sign == 0:
            if k < 0:
                raise ZeroDivisionError(f"LNS: 0 ** {power} (LNS has no infinity)")
            return LNS(1 if k == 0 else 0, self.fmt)
        if k % 2 == 0:
            result = self._integer_power(abs(k) // 2)
        else:
            result = self._integer_power(abs(k))._unary(kernels.sqrt)
        return LNS(1, self.fmt) / result if k < 0 else result

    # ---- comparisons -------------------------------------------------------
    def _compare(self, other):
        """-1, 0, +1 as self <, ==, > other; NotImplemented for non-numbers."""
        if isinstance(other, LNS) and other.fmt.gamma == self.fmt.gamma:
            order = kernels.compare_values(_one(self.sign, np.int8), _one(self.exp, np.int64),
                                           _one(other.sign, np.int8), _one(other.exp, np.int64))
            return int(order[0])
        if isinstance(other, (LNS, numbers.Real)):
            mine, theirs = float(self), float(other)
            if math.isnan(theirs):
                return None
            return (mine > theirs) - (mine < theirs)
        return NotImplemented

    def __eq__(self, other):
        order = self._compare(other)
        return order if order is NotImplemented else order == 0

    def __lt__(self, other):
        order = self._compare(other)
        return order if order is NotImplemented else order is not None and order < 0

    def __le__(self, other):
        order = self._compare(other)
        return order if order is NotImplemented else order is not None and order <= 0

    def __gt__(self, other):
        order = self._compare(other)
        return order if order is NotImplemented else order is not None and order > 0

    def __ge__(self, other):
        order = self._compare(other)
        return order if order is NotImplemented else order is not None and order >= 0
