"""Sliding 2-D windows over (N, C, H, W) arrays, shared by conv2d and the pools.

The windows are a strided view (numpy's sliding_window_view): no copy and no
Python loop until a caller reshapes them into rows.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def pair(value, name: str) -> tuple[int, int]:
    """An int or a pair of ints as (height, width)."""
    hw = (value, value) if np.ndim(value) == 0 else tuple(value)
    if len(hw) != 2 or not all(isinstance(v, (int, np.integer)) for v in hw):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(hw[0]), int(hw[1])


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Window positions along one axis (windows that would run past the edge are dropped)."""
    return (size + 2 * padding - kernel) // stride + 1


def pad(array: np.ndarray, padding: tuple[int, int]) -> np.ndarray:
    """Zero rows and columns around H and W; a 0 sign and 0 exponent is the LNS zero."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return array
    return np.pad(array, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def windows(array: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """(N, C, H, W) -> (N, C, Ho, Wo, kh, kw) view of every window."""
    view = sliding_window_view(array, kernel, axis=(2, 3))
    return view[:, :, ::stride[0], ::stride[1]]


# Window entries im2col copies at once when it adds columns.
IM2COL_BLOCK = 1 << 16


def im2col(array: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
           padding: tuple[int, int], extra: int = 0, fill=0) -> np.ndarray:
    """(N, C, H, W) -> (N*Ho*Wo, C*kh*kw + extra): one row per window, columns
    ordered (c, u, v), then `extra` columns of `fill` (conv2d's bias column)."""
    view = windows(pad(array, padding), kernel, stride)
    n, c, ho, wo, kh, kw = view.shape
    k = c * kh * kw
    rows = view.transpose(0, 2, 3, 1, 4, 5)
    if not extra:
        return rows.reshape(n * ho * wo, k)
    out = np.empty((n * ho * wo, k + extra), array.dtype)
    out[:, k:] = fill
    # A few images at a time: reshaping the strided windows copies them, and
    # the copy of all of them would double the peak.
    step = max(1, IM2COL_BLOCK // max(1, ho * wo * k))
    for i in range(0, n, step):
        out[i * ho * wo:(i + step) * ho * wo, :k] = rows[i:i + step].reshape(-1, k)
    return out
