"""The IDX file format (MNIST's): reading with every check, and writing.

An IDX file is a 4-byte magic number, 0x00 0x00 <dtype code> <ndim>, then
ndim big-endian uint32 dimensions, then the array in C order, big-endian.
Files may be gzip-compressed (recognised by content, not by name).

Every problem is a DataError naming the file and what is wrong with it, found
before the data is used: a bad file must fail here, not deep in training.
The declared size is checked against the real (or decompressed) length
before any array is allocated, and gzip streams are decompressed in bounded
chunks, so a lying header or a gzip bomb cannot make the reader allocate
more than the file really holds (and never more than max_bytes).
"""
from __future__ import annotations

import gzip
import math
import os
import secrets
import struct
import zlib
from pathlib import Path

import numpy as np

# IDX dtype codes and their big-endian numpy types (the IDX specification).
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF_KIND = {(dt.kind, dt.itemsize): code for code, dt in IDX_DTYPES.items()}

GZIP_MAGIC = b"\x1f\x8b"
# IDX allows 255 dimensions; numpy 1.x arrays hold at most 32 (2.x: 64).
MAX_DIMS = 32
DEFAULT_MAX_BYTES = 1 << 30     # 1 GiB: MNIST's largest file is 47 MB
_CHUNK = 1 << 20


class DataError(ValueError):
    """A data file or data set is missing, corrupt, truncated or of the wrong shape."""


def _fail(path, problem: str) -> DataError:
    return DataError(f"{path}: {problem}")


def _read_header(stream, path) -> tuple[np.dtype, tuple[int, ...]]:
    magic = stream.read(4)
    if len(magic) < 4:
        raise _fail(path, f"truncated IDX header: expected 4 magic bytes, got {len(magic)}")
    if magic[0] != 0 or magic[1] != 0:
        raise _fail(path, f"bad magic number 0x{magic.hex()}: an IDX file starts with 0x0000")
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        raise _fail(path, f"unknown IDX dtype code 0x{code:02x} (known: {known})")
    if ndim == 0:
        raise _fail(path, "IDX header declares 0 dimensions")
    if ndim > MAX_DIMS:
        raise _fail(path, f"IDX header declares {ndim} dimensions, more than the {MAX_DIMS} "
                          "an array can have")
    raw_dims = stream.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise _fail(path, f"truncated IDX header: expected {4 * ndim} bytes of dimensions, "
                          f"got {len(raw_dims)}")
    return IDX_DTYPES[code], struct.unpack(f">{ndim}I", raw_dims)


def _check_expected(path, dtype, dims, expect_dtype, expect_shape) -> None:
    if expect_dtype is not None and dtype != np.dtype(expect_dtype).newbyteorder(">"):
        raise _fail(path, f"IDX dtype is {dtype.name}, expected {np.dtype(expect_dtype).name}")
    if expect_shape is None:
        return
    matches = len(dims) == len(expect_shape) and all(
        want is None or want == got for want, got in zip(expect_shape, dims))
    if not matches:
        wanted = ", ".join("any" if d is None else str(d) for d in expect_shape)
        raise _fail(path, f"IDX dimensions are {dims}, expected ({wanted})")


def _read_payload(stream, path, expected: int) -> bytearray:
    """Read the data after the header, never holding more than expected + one chunk."""
    payload = bytearray()
    while len(payload) <= expected:
        chunk = stream.read(min(_CHUNK, expected + 1 - len(payload)))
        if not chunk:
            break
        payload += chunk
    if len(payload) < expected:
        raise _fail(path, f"truncated: the header declares {expected} data bytes, "
                          f"the file holds {len(payload)}")
    if len(payload) > expected:
        raise _fail(path, f"trailing data: more than the {expected} data bytes the header declares")
    return payload


def _is_gzip(path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def read_idx(path, *, expect_dtype=None, expect_shape=None,
             max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian numpy array.

    expect_dtype: the numpy dtype the file must hold (e.g. np.uint8).
    expect_shape: the dimensions it must declare; None entries match anything.
    max_bytes: refuse files declaring more data than this.
    """
    try:
        compressed = _is_gzip(path)
        opener = gzip.open if compressed else open
        with opener(path, "rb") as stream:
            dtype, dims = _read_header(stream, path)
            _check_expected(path, dtype, dims, expect_dtype, expect_shape)
            expected = math.prod(dims) * dtype.itemsize
            # Zero dimensions excluded: numpy refuses a shape like (0, 2**31, 2**31) too.
            if math.prod(max(d, 1) for d in dims) * dtype.itemsize > max_bytes:
                raise _fail(path, f"IDX header declares dimensions {dims} of {dtype.name}, "
                                  f"more than the {max_bytes}-byte limit")
            if not compressed:
                _check_raw_length(path, 4 + 4 * len(dims), expected)
            payload = _read_payload(stream, path, expected)
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise _fail(path, f"corrupt gzip stream ({err})") from err
    except OSError as err:
        raise _fail(path, f"cannot read ({err.strerror or err})") from err
    array = np.frombuffer(payload, dtype=dtype).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _check_raw_length(path, header: int, expected: int) -> None:
    """Compare the declared size with the file's length before reading any data."""
    actual = os.path.getsize(path) - header
    if actual < expected:
        raise _fail(path, f"truncated: the header declares {expected} data bytes, "
                          f"the file holds {actual}")
    if actual > expected:
        raise _fail(path, f"trailing data: {actual} data bytes, the header declares {expected}")


def encode_idx(array) -> bytes:
    """The IDX bytes of an array (any dtype IDX has; stored big-endian)."""
    array = np.asarray(array)
    code = _CODE_OF_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if code is None or array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX cannot hold a {array.ndim}-d {array.dtype} array")
    if any(d >= 1 << 32 for d in array.shape):
        raise ValueError(f"IDX dimensions must fit in 32 bits, got {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()


def write_idx(path, array, *, compress: bool | None = None) -> Path:
    """Write an array as an IDX file, atomically (temp file then rename).

    compress: gzip it; by default when the name ends in .gz.  The gzip
    header carries no time stamp, so equal arrays give equal bytes.
    """
    path = Path(path)
    if compress is None:
        compress = path.suffix == ".gz"
    data = encode_idx(array)
    if compress:
        data = gzip.compress(data, compresslevel=6, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def partial_path(final: Path) -> Path:
    """A fresh name beside final for writing it before an atomic rename.

    Unlike tempfile.mkstemp's 0600 files, a file opened under this name gets
    the usual permissions (umask), which the renamed cache file keeps.
    """
    return final.with_name(f"{final.name}.{os.getpid()}-{secrets.token_hex(4)}.part")
