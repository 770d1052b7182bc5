"""The LNS number format: sign plus integer exponent, and its B-bit storage code.

A value is s * 2**(x / gamma) with s in {-1, 0, +1} and x an integer
(DESIGN.md section 1).  This module owns the float boundary (encode, decode),
requantization to B bits with a per-tensor scale exponent t, moving exponents
between gammas, and packing to B-bit codes.  Nothing here does float
arithmetic on tensor data except encode and decode.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lnsnet import kernels
# The dtypes every stored sign and exponent has; requantization (a kernel) makes them.
from lnsnet.kernels.quantize import EXP_DTYPE, SIGN_DTYPE
from lnsnet.tables import Tables, tables_for

MAX_FRAC_BITS = 16
MIN_BITS, MAX_BITS = 2, 32

# Every exponent the engine holds is kept within 2**(+-LIMIT_OCTAVES) so that
# decode never overflows float64 and exponent sums never overflow int32
# (LIMIT_OCTAVES * 2**16 * 2 < 2**31).
LIMIT_OCTAVES = 1000

UNDERFLOW_MODES = ("flush", "saturate")
ROUNDING_MODES = ("nearest", "stochastic")


def _check_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"LNSFormat: {name} must be an integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class LNSFormat:
    """A B-bit LNS format with base 2**(1/gamma), gamma a power of two."""

    bits: int = 8
    gamma: int = 8

    def __post_init__(self):
        bits = _check_int("bits", self.bits)
        gamma = _check_int("gamma", self.gamma)
        if not MIN_BITS <= bits <= MAX_BITS:
            raise ValueError(
                f"LNSFormat: bits={bits} is out of range {MIN_BITS}..{MAX_BITS}")
        if gamma < 1 or gamma & (gamma - 1) or gamma > 2 ** MAX_FRAC_BITS:
            raise ValueError(
                f"LNSFormat: gamma={gamma} must be a power of two 1..2**{MAX_FRAC_BITS}")
        object.__setattr__(self, "bits", bits)
        object.__setattr__(self, "gamma", gamma)

    def __repr__(self):
        return f"LNSFormat(bits={self.bits}, gamma={self.gamma})"

    # ---- derived constants -------------------------------------------------
    @property
    def frac_bits(self) -> int:
        """f with gamma = 2**f: the exponent's fractional bits."""
        return self.gamma.bit_length() - 1

    @property
    def max_code(self) -> int:
        """M = 2**(B-1) - 1, the largest magnitude code."""
        return (1 << (self.bits - 1)) - 1

    @property
    def span(self) -> int:
        """M - 1: a tensor's exponents lie in t - span .. t."""
        return self.max_code - 1

    @property
    def limit(self) -> int:
        """The largest exponent magnitude the engine holds for this gamma."""
        return LIMIT_OCTAVES * self.gamma

    @property
    def tables(self) -> Tables:
        """SB, DB, POW2, LOG2 for this gamma, built once and shared."""
        return tables_for(self.gamma)

    @property
    def code_dtype(self):
        if self.bits <= 8:
            return np.uint8
        if self.bits <= 16:
            return np.uint16
        return np.uint32

    # ---- the float boundary ------------------------------------------------
    def encode(self, values) -> tuple[np.ndarray, np.ndarray]:
        """Floats to (sign, exponent), x = round(gamma * log2|v|), ties away from zero.

        The exponent is not yet quantized to B bits (see requantize); it is
        only kept within the engine's limit.
        """
        v = np.asarray(values, dtype=np.float64)
        bad = ~np.isfinite(v)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"encode: {int(bad.sum())} non-finite value(s) (NaN or inf) in an "
                f"array of shape {v.shape}; the first is {v[first]} at index {first}")
        sign = np.sign(v).astype(SIGN_DTYPE)
        mag = np.abs(v)
        nonzero = sign != 0
        scaled = self.gamma * np.log2(np.where(nonzero, mag, 1.0))
        exp = np.floor(scaled + 0.5)  # scaled may be negative: ties away from zero below
        exp = np.where(scaled < 0, -np.floor(-scaled + 0.5), exp)
        exp = np.clip(exp, -self.limit, self.limit)
        exp = np.where(nonzero, exp, 0).astype(EXP_DTYPE)
        below = nonzero & (scaled < -self.limit - 0.5)
        if below.any():  # smaller than anything the engine holds: exactly zero
            sign = np.where(below, 0, sign).astype(SIGN_DTYPE)
            exp = np.where(below, 0, exp).astype(EXP_DTYPE)
        return sign, exp

    def decode(self, sign, exp) -> np.ndarray:
        """(sign, exponent) to float64."""
        sign = np.asarray(sign)
        exp = np.asarray(exp)
        return sign * np.exp2(exp / self.gamma)

    # ---- quantization ------------------------------------------------------
    def requantize(self, sign, exp, *, t=None, underflow="flush", src_gamma=None,
                   rounding="nearest", rng=None):
        """Quantize exponents to this format's B bits; returns (sign, exp, t).

        src_gamma: the gamma the exponents are written in (default: this
        format's); a finer one is shifted to this gamma first, with rounding
        to nearest (ties toward the larger magnitude) or stochastic.
        t: the scale exponent, default the largest exponent present.
        Exponents above t saturate to t; those below t - span (or -limit, if
        that is higher) flush to zero ("flush") or saturate to that bound
        ("saturate").  Nothing wraps.
        """
        if underflow not in UNDERFLOW_MODES:
            raise ValueError(f"requantize: underflow={underflow!r}, expected one of {UNDERFLOW_MODES}")
        if rounding not in ROUNDING_MODES:
            raise ValueError(f"requantize: rounding={rounding!r}, expected one of {ROUNDING_MODES}")
        sign = np.asarray(sign, dtype=SIGN_DTYPE)
        exp = np.asarray(exp)
        if sign.shape != exp.shape:
            raise ValueError(f"requantize: sign shape {sign.shape} != exponent shape {exp.shape}")
        if exp.dtype.kind not in "iu":
            raise ValueError(f"requantize: exponents must be integers, got dtype {exp.dtype}")
        # Exponents far beyond the limit are clipped to twice the limit first:
        # they still saturate or flush, but the rescaling shifts cannot wrap them.
        far = 2 * LIMIT_OCTAVES * (src_gamma or self.gamma)
        if exp.dtype.kind == "u":
            exp = np.minimum(exp, far).astype(np.int64)
        elif exp.dtype not in (np.int32, np.int64):
            exp = exp.astype(np.int64)
        shift = 0
        if src_gamma is not None:
            shift = src_gamma.bit_length() - self.gamma.bit_length()
        offset = None
        if shift > 0 and rounding != "nearest":
            offset = stochastic_offset(exp.shape, shift, rng)
        return kernels.requantize(sign, exp, far=far, shift=shift, t=None if t is None else int(t),
                                  span=self.span, limit=self.limit, flush=underflow == "flush",
                                  offset=offset)

    # ---- storage codes -----------------------------------------------------
    def pack(self, sign, exp, t) -> np.ndarray:
        """B-bit codes: sign bit on top, magnitude m = x - t + M (0 means zero)."""
        sign = np.asarray(sign)
        exp = np.asarray(exp, dtype=np.int64)
        nonzero = sign != 0
        m = exp - int(t) + self.max_code
        if nonzero.any():
            bad = nonzero & ((m < 1) | (m > self.max_code))
            if bad.any():
                first = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ValueError(
                    f"pack: {int(bad.sum())} exponent(s) outside {int(t) - self.span}..{int(t)} "
                    f"(t={int(t)}, {self}); the first is {int(exp[first])} at {first}; requantize first")
        m = np.where(nonzero, m, 0)
        code = m | np.where(sign < 0, 1 << (self.bits - 1), 0)
        return code.astype(self.code_dtype)

    def unpack(self, codes, t) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of pack."""
        codes = np.asarray(codes)
        if codes.dtype.kind != "u":
            raise ValueError(f"unpack: codes must be unsigned integers, got {codes.dtype}")
        codes = codes.astype(np.int64)
        if (codes >> self.bits).any():
            raise ValueError(f"unpack: codes wider than {self.bits} bits for {self}")
        m = codes & self.max_code
        neg = (codes >> (self.bits - 1)) & 1
        sign = np.where(m == 0, 0, np.where(neg == 1, -1, 1)).astype(SIGN_DTYPE)
        exp = np.where(m == 0, 0, m - self.max_code + int(t)).astype(EXP_DTYPE)
        return sign, exp


def rescale(exp, src_gamma: int, dst_gamma: int, *, rounding="nearest", rng=None):
    """Rewrite exponents written for src_gamma in dst_gamma (both powers of two).

    To a finer gamma this is an exact left shift.  To a coarser one it is a
    right shift by k bits, rounded to nearest (adding 2**(k-1) first: ties go
    toward the larger exponent) or stochastically (adding a uniform integer
    in [0, 2**k) from the seeded integer generator rng).  Between equal
    gammas integer exponents come back as they are, not copied: conv1's
    weight gradient reads LeNet's im2col rows (6 MiB) this way.
    """
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"rescale: rounding={rounding!r}, expected one of {ROUNDING_MODES}")
    shift = src_gamma.bit_length() - dst_gamma.bit_length()
    exp = np.asarray(exp)
    if shift == 0 and exp.dtype.kind in "iu":
        return exp
    exp = exp.astype(np.int64)
    if shift <= 0:
        return exp << -shift
    if rounding == "nearest":
        return (exp + (1 << (shift - 1))) >> shift
    return (exp + stochastic_offset(exp.shape, shift, rng)) >> shift


def stochastic_offset(shape, shift: int, rng) -> np.ndarray:
    """What stochastic rounding adds before a right shift by `shift` bits: uniform in [0, 2**shift)."""
    if rng is None:
        raise ValueError("stochastic rounding needs a seeded generator rng")
    return rng.integers(0, 1 << shift, size=shape, dtype=np.int64)
