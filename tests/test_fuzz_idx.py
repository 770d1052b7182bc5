"""Fuzzing the IDX reader where tests/test_data.py does not: arbitrary headers.

tests/test_data.py fuzzes truncations, bit flips and trailing bytes of valid
files, and checks one huge header and one gzip bomb by hand.  Here every
header field is drawn at random (any dtype code, 0 to 255 dimensions, each
up to 2**32 - 1) over a short payload, raw or gzip-compressed: the reader
must refuse with a DataError, or return exactly the array the bytes hold,
and never allocate more than the file's content plus a little, whatever the
header declares.

Fuzz cases: 2 properties, 400 examples in all (the max_examples below).
"""
from __future__ import annotations

import gzip
import struct
import sys
import tracemalloc

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lnsnet.data import DataError, read_idx
from lnsnet.data.idx import IDX_DTYPES

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Beyond the bytes the file really holds, the reader may use this much (its chunk, bookkeeping).
ALLOCATION_SLACK = 2 << 20

dims = st.one_of(st.integers(0, 4), st.integers(0, 2 ** 32 - 1),
                 st.sampled_from([2 ** 32 - 1, 2 ** 31, 2 ** 16]))


@st.composite
def idx_files(draw) -> bytes:
    code = draw(st.one_of(st.sampled_from(sorted(IDX_DTYPES)), st.integers(0, 255)))
    shape = draw(st.one_of(st.lists(st.integers(0, 4), max_size=4), st.lists(dims, max_size=4),
                           st.lists(st.integers(0, 2), min_size=30, max_size=255)))
    payload = draw(st.one_of(st.binary(max_size=64),
                             st.just(bytes(_nbytes(code, shape))) if _nbytes(code, shape) < 4096
                             else st.binary(max_size=8)))
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


def _nbytes(code: int, shape) -> int:
    itemsize = IDX_DTYPES[code].itemsize if code in IDX_DTYPES else 1
    return int(np.prod(shape, dtype=object)) * itemsize


def read_with_peak(path):
    """(array or DataError, peak bytes allocated while reading)."""
    tracemalloc.start()
    try:
        result = read_idx(path)
    except DataError as err:
        result = err
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result, peak


def assert_exact(array: np.ndarray, content: bytes) -> None:
    """A parsed file holds exactly its header and the array's bytes, big-endian."""
    header = 4 + 4 * array.ndim
    assert len(content) == header + array.nbytes
    big_endian = array.byteswap() if sys.byteorder == "little" else array
    assert content[header:] == big_endian.tobytes()


@settings(FUZZ, max_examples=250)
@given(content=idx_files())
def test_any_header_is_refused_or_exact_without_large_allocations(tmp_path, content):
    path = tmp_path / "fuzz.idx"
    path.write_bytes(content)
    result, peak = read_with_peak(path)
    assert peak < len(content) + ALLOCATION_SLACK, f"allocated {peak} bytes for a {len(content)}-byte file"
    if isinstance(result, DataError):
        assert str(path) in str(result)
        event("refused")
    else:
        assert_exact(result, content)
        event("parsed")


@settings(FUZZ, max_examples=150)
@given(content=idx_files(), members=st.integers(1, 3), tail=st.sampled_from([b"", b"\x00" * 8, b"junk"]))
def test_gzip_streams_of_any_header(tmp_path, content, members, tail):
    """The same headers, gzip-compressed, split over several gzip members and followed by
    padding or junk: the decompressed size counts, and stays bounded."""
    cuts = np.linspace(0, len(content), members + 1).astype(int)
    data = b"".join(gzip.compress(content[a:b], mtime=0) for a, b in zip(cuts, cuts[1:])) + tail
    path = tmp_path / "fuzz.idx.gz"
    path.write_bytes(data)
    result, peak = read_with_peak(path)
    assert peak < len(content) + ALLOCATION_SLACK
    if isinstance(result, DataError):
        event("refused")
    else:
        assert_exact(result, content)
        event("parsed")


def test_more_dimensions_than_an_array_can_have(tmp_path):
    """Found by the fuzzing above: 250 dimensions of size 1 used to pass every check and
    fail in numpy's reshape with a ValueError that named no file."""
    path = tmp_path / "deep.idx"
    path.write_bytes(bytes([0, 0, 0x08, 250]) + struct.pack(">250I", *[1] * 250) + b"\x07")
    result, _ = read_with_peak(path)
    assert isinstance(result, DataError) and "250 dimensions" in str(result) and str(path) in str(result)
