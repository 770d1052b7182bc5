"""lnsnet.data: the IDX reader, where data sets come from, batches, pixels to LNS.

Every test runs with HOME and LNSNET_DATA pointing into tmp_path, so nothing
reads or writes the real cache, and no test contacts a remote host: the
downloader is exercised with fake fetchers and a server on 127.0.0.1.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import socket
import sys
import threading
import tracemalloc
import urllib.error
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lnsnet.data import (DataError, DatasetUnavailable, PixelEncoder, batch_count,
                         iterate_batches, load_dataset, read_idx, write_idx)
from lnsnet.data import sources
from lnsnet.data.idx import encode_idx
from lnsnet.format import LNSFormat

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("LNSNET_DATA", raising=False)
    return home


@pytest.fixture
def small_counts(monkeypatch):
    """Shrink the official split sizes so that fake data sets are tiny."""
    monkeypatch.setattr(sources, "SPLIT_COUNTS", {"train": 30, "test": 20})
    return sources.SPLIT_COUNTS


def write_fake_set(folder: Path, counts, *, gz: bool = False, seed: int = 0) -> dict:
    """A structurally valid MNIST-like set of random pixels: role -> array written."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in counts.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(count) % 10).astype(np.uint8)
    for role, array in arrays.items():
        write_idx(folder / (sources.FILE_NAMES[role] + (".gz" if gz else "")), array)
    return arrays


def refusing_fetch(url, dest, timeout):
    raise urllib.error.URLError("offline (test)")


# ---- IDX: good files ---------------------------------------------------------

IDX_EXAMPLES = [
    np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
    np.array([-128, -1, 0, 127], dtype=np.int8),
    np.array([[-32768, 1], [2, 32767]], dtype=np.int16),
    np.array([-(2 ** 31), 0, 2 ** 31 - 1], dtype=np.int32),
    np.array([1.5, -0.25, np.pi], dtype=np.float32),
    np.array([[1e300, -1e-300]], dtype=np.float64),
    np.zeros((0, 28, 28), dtype=np.uint8),
]


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("array", IDX_EXAMPLES, ids=lambda a: f"{a.dtype}{a.shape}")
def test_idx_round_trip(tmp_path, name, array):
    path = write_idx(tmp_path / name, array)
    back = read_idx(path)
    assert back.dtype == array.dtype.newbyteorder("=") and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert not list(tmp_path.glob("*.part")), "write_idx leaves no temporary file"


def test_idx_header_is_big_endian_mnist_layout():
    data = encode_idx(np.zeros((2, 28, 28), np.uint8))
    assert data[:4] == b"\x00\x00\x08\x03"
    assert data[4:16] == (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    assert len(data) == 16 + 2 * 28 * 28


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    path = write_idx(tmp_path / "labels", array, compress=True)
    np.testing.assert_array_equal(read_idx(path), array)
    assert write_idx(tmp_path / "a.gz", array).read_bytes() == \
        write_idx(tmp_path / "b.gz", array).read_bytes(), "gzip output is reproducible"


# ---- IDX: bad files ----------------------------------------------------------

def _write_bytes(path: Path, data: bytes, gz: bool) -> Path:
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _error_of(path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        read_idx(path, **kwargs)
    assert str(path) in str(info.value), "the error names the file"
    return str(info.value)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_truncated_file(tmp_path, gz):
    data = encode_idx(np.ones((10, 28, 28), np.uint8))
    path = _write_bytes(tmp_path / "images", data[:-100], gz)
    message = _error_of(path)
    assert "truncated" in message and "7840" in message and "7740" in message


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_truncated_header(tmp_path, gz):
    data = encode_idx(np.ones((10, 28, 28), np.uint8))
    assert "truncated IDX header" in _error_of(_write_bytes(tmp_path / "h", data[:9], gz))
    assert "truncated IDX header" in _error_of(_write_bytes(tmp_path / "m", data[:3], gz))


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_trailing_data(tmp_path, gz):
    data = encode_idx(np.ones(10, np.uint8)) + b"\x00"
    assert "trailing data" in _error_of(_write_bytes(tmp_path / "labels", data, gz))


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_bad_magic(tmp_path, gz):
    data = b"\x01\x00\x08\x01" + encode_idx(np.ones(10, np.uint8))[4:]
    assert "bad magic" in _error_of(_write_bytes(tmp_path / "labels", data, gz))
    text = _write_bytes(tmp_path / "text", b"hello, world\n" * 10, gz)
    assert "bad magic" in _error_of(text)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_unknown_dtype_code(tmp_path, gz):
    data = b"\x00\x00\x07\x01" + encode_idx(np.ones(10, np.uint8))[4:]
    assert "dtype code 0x07" in _error_of(_write_bytes(tmp_path / "labels", data, gz))


def test_zero_dimensions(tmp_path):
    assert "0 dimensions" in _error_of(_write_bytes(tmp_path / "x", b"\x00\x00\x08\x00", False))


def test_wrong_dtype_for_the_caller(tmp_path):
    path = write_idx(tmp_path / "labels", np.ones(10, np.int16))
    assert "int16" in _error_of(path, expect_dtype=np.uint8)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_wrong_count_and_dims(tmp_path, gz):
    path = write_idx(tmp_path / ("images" + (".gz" if gz else "")), np.ones((9, 28, 28), np.uint8))
    assert "(9, 28, 28)" in _error_of(path, expect_shape=(10, 28, 28))
    assert "expected (any, 28)" in _error_of(path, expect_shape=(None, 28))
    assert read_idx(path, expect_shape=(None, 28, 28)).shape == (9, 28, 28)


def test_missing_file_and_directory(tmp_path):
    assert "cannot read" in _error_of(tmp_path / "absent")
    assert "cannot read" in _error_of(tmp_path)


def test_corrupt_gzip_stream(tmp_path):
    data = bytearray(gzip.compress(encode_idx(np.arange(4000, dtype=np.int32))))
    data[len(data) // 2] ^= 0xFF
    assert "corrupt gzip" in _error_of(_write_bytes(tmp_path / "x.gz", bytes(data), False))


def _peak_allocation(function) -> int:
    tracemalloc.start()
    try:
        function()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def _huge_header() -> bytes:
    # 4e9 x 4e9 x 28 bytes declared, 100 bytes present.
    return b"\x00\x00\x08\x03" + (4_000_000_000).to_bytes(4, "big") * 2 + (28).to_bytes(4, "big")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_huge_declared_dimensions_rejected_without_allocating(tmp_path, gz):
    path = _write_bytes(tmp_path / "huge", _huge_header() + bytes(100), gz)
    peak = _peak_allocation(lambda: _error_of(path))
    assert "limit" in _error_of(path)
    assert peak < 1 << 20


def test_empty_array_with_huge_other_dimensions(tmp_path):
    header = b"\x00\x00\x08\x03" + bytes(4) + (4_000_000_000).to_bytes(4, "big") * 2
    assert "limit" in _error_of(_write_bytes(tmp_path / "empty", header, False))


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_lying_header_within_limit_allocates_only_what_is_there(tmp_path, gz):
    # Declares 500 MB (under the limit passed), holds 1000 bytes: a truncation,
    # found without reserving the declared size.
    header = b"\x00\x00\x08\x03" + (637_755).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    path = _write_bytes(tmp_path / "liar", header + bytes(1000), gz)
    peak = _peak_allocation(lambda: _error_of(path, max_bytes=1 << 30))
    assert "truncated" in _error_of(path, max_bytes=1 << 30)
    assert peak < 4 << 20


def test_gzip_bomb_is_read_only_as_far_as_declared(tmp_path):
    # A 10-label header followed by 256 MB of zeros, which gzip squeezes to ~250 kB.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(encode_idx(np.zeros(10, np.uint8)))]
    zeros = bytes(1 << 20)
    parts += [compressor.compress(zeros) for _ in range(256)]
    parts.append(compressor.flush())
    path = tmp_path / "bomb.gz"
    path.write_bytes(b"".join(parts))
    peak = _peak_allocation(lambda: _error_of(path))
    assert "trailing data" in _error_of(path)
    assert peak < 4 << 20


FUZZ_ARRAYS = [
    np.arange(60, dtype=np.uint8).reshape(3, 4, 5),
    np.arange(-6, 6, dtype=np.int32).reshape(3, 4),
    np.linspace(-1, 1, 7),
    np.zeros((0, 3), np.int16),
]


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(array=st.sampled_from(FUZZ_ARRAYS), gz=st.booleans(), cut=st.integers(0, 200),
       flips=st.lists(st.integers(0, 8 * 200), max_size=4), extra=st.binary(max_size=8))
def test_fuzzed_idx_parses_or_raises_data_error(tmp_path, array, gz, cut, flips, extra):
    data = bytearray(encode_idx(array))
    if gz:
        data = bytearray(gzip.compress(bytes(data), mtime=0))
    for bit in flips:
        if bit // 8 < len(data):
            data[bit // 8] ^= 1 << (bit % 8)
    data = bytes(data[:len(data) - cut % (len(data) + 1)]) + extra
    path = tmp_path / "fuzz"
    path.write_bytes(data)
    try:
        parsed = read_idx(path)
    except DataError:
        return
    # A file that parses holds exactly its header and the array, big-endian.
    content = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    header = 4 + 4 * parsed.ndim
    assert len(content) == header + parsed.nbytes
    big_endian = parsed.byteswap() if sys.byteorder == "little" else parsed
    assert content[header:] == big_endian.tobytes()


# ---- where MNIST and Fashion-MNIST come from ---------------------------------

def test_search_order(tmp_path, monkeypatch, isolated_home):
    monkeypatch.setenv("LNSNET_DATA", str(tmp_path / "env"))
    dirs = sources.search_dirs(sources.SOURCES["fashion-mnist"], tmp_path / "mine")
    assert dirs == [tmp_path / "mine", tmp_path / "mine" / "fashion-mnist",
                    tmp_path / "env" / "fashion-mnist",
                    isolated_home / ".cache" / "lnsnet" / "fashion-mnist", DEBIAN_FASHION]
    assert sources.cache_root() == tmp_path / "env"
    monkeypatch.delenv("LNSNET_DATA")
    assert sources.cache_root() == isolated_home / ".cache" / "lnsnet"


def test_data_dir_wins_over_cache(tmp_path, small_counts, isolated_home):
    mine = write_fake_set(tmp_path / "mine", small_counts)
    cache = write_fake_set(isolated_home / ".cache" / "lnsnet" / "mnist", small_counts,
                           gz=True, seed=1)
    data = load_dataset("mnist", tmp_path / "mine", fetch=refusing_fetch)
    np.testing.assert_array_equal(data.train_images, mine["train_images"])
    assert data.source == f"mnist from {tmp_path / 'mine'}"
    cached = load_dataset("mnist", fetch=refusing_fetch)
    np.testing.assert_array_equal(cached.test_images, cache["test_images"])
    assert ".cache" in cached.source


def test_lnsnet_data_subfolder_is_searched(tmp_path, monkeypatch, small_counts):
    monkeypatch.setenv("LNSNET_DATA", str(tmp_path / "env"))
    write_fake_set(tmp_path / "env" / "mnist", small_counts, gz=True)
    data = load_dataset("mnist", fetch=refusing_fetch, train_limit=7)
    assert data.train_images.shape == (7, 28, 28) and data.test_images.shape == (20, 28, 28)
    assert data.train_labels.dtype == np.uint8 and data.name == "mnist"


def test_user_files_are_checked_for_structure(tmp_path, small_counts):
    folder = tmp_path / "mine"
    write_fake_set(folder, small_counts)
    write_idx(folder / "t10k-labels-idx1-ubyte", np.arange(19, dtype=np.uint8) % 10)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: IDX dimensions are \(19,\)"):
        load_dataset("mnist", folder, fetch=refusing_fetch)
    write_idx(folder / "t10k-labels-idx1-ubyte", np.full(20, 3, np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte", np.full(30, 10, np.uint8))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte: label 10 at index 0"):
        load_dataset("mnist", folder, fetch=refusing_fetch)


@pytest.mark.skipif(not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist():
    data = load_dataset("fashion-mnist", download=False)
    assert str(DEBIAN_FASHION) in data.source
    assert data.train_images.shape == (60000, 28, 28) and data.test_images.shape == (10000, 28, 28)
    assert data.train_images.dtype == np.uint8 and data.test_labels.dtype == np.uint8
    assert np.bincount(data.train_labels).tolist() == [6000] * 10
    assert np.bincount(data.test_labels).tolist() == [1000] * 10


def _without_system_dirs(monkeypatch, tmp_path, name):
    source = dataclasses.replace(sources.SOURCES[name], system_dirs=(tmp_path / "nowhere",))
    monkeypatch.setitem(sources.SOURCES, name, source)


@pytest.mark.parametrize("name, hint", [
    ("mnist", "~/.cache/lnsnet/mnist"),
    ("fashion-mnist", "apt-get install dataset-fashion-mnist"),
])
def test_offline_message_is_one_clear_line(tmp_path, monkeypatch, isolated_home, name, hint):
    _without_system_dirs(monkeypatch, tmp_path, name)
    with pytest.raises(DatasetUnavailable) as info:
        load_dataset(name, tmp_path / "mine", fetch=refusing_fetch)
    message = str(info.value)
    assert "\n" not in message
    for file_name in sources.FILE_NAMES.values():
        assert file_name in message
    assert str(tmp_path / "mine") in message and str(isolated_home / ".cache") in message
    assert "offline (test)" in message and hint in message


def test_offline_message_names_only_the_missing_files(tmp_path, small_counts):
    folder = tmp_path / "mine"
    write_fake_set(folder, small_counts)
    (folder / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DatasetUnavailable, match="missing t10k-images-idx3-ubyte") as info:
        load_dataset("mnist", folder, download=False)
    assert "train-images" not in str(info.value) and "downloads disabled" in str(info.value)


def test_checksum_failure_deletes_the_partial_file(tmp_path, isolated_home):
    seen = []

    def wrong_bytes(url, dest, timeout):
        seen.append(dest)
        Path(dest).write_bytes(b"not the file you are looking for")

    with pytest.raises(DataError, match="checksum mismatch.*partial download .* was deleted"):
        load_dataset("mnist", fetch=wrong_bytes)
    cache = isolated_home / ".cache" / "lnsnet" / "mnist"
    assert seen and not Path(seen[0]).exists()
    assert list(cache.iterdir()) == []


def test_interrupted_download_leaves_no_partial_file(isolated_home):
    def interrupted(url, dest, timeout):
        Path(dest).write_bytes(b"half a file")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        load_dataset("mnist", fetch=interrupted)
    assert list((isolated_home / ".cache" / "lnsnet" / "mnist").iterdir()) == []


def test_failed_mirror_falls_back_and_network_errors_are_unavailable(tmp_path, isolated_home):
    calls = []

    def flaky(url, dest, timeout):
        calls.append((url, timeout))
        raise TimeoutError("timed out")

    with pytest.raises(DatasetUnavailable, match="timed out"):
        load_dataset("mnist", fetch=flaky, timeout=2.5)
    mirrors = sources.SOURCES["mnist"].mirrors
    assert [url for url, _ in calls] == [m + "train-images-idx3-ubyte.gz" for m in mirrors]
    assert all(timeout == 2.5 for _, timeout in calls)
    assert list((isolated_home / ".cache" / "lnsnet" / "mnist").iterdir()) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def local_mirror(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_download_from_local_mirror(monkeypatch, small_counts, local_mirror, isolated_home):
    served, url = local_mirror
    arrays = write_fake_set(served, small_counts, gz=True)
    md5 = {role: hashlib.md5((served / (sources.FILE_NAMES[role] + ".gz")).read_bytes()).hexdigest()
           for role in sources.ROLES}
    dead = f"http://127.0.0.1:{_free_port()}/"   # nothing listens: connection refused
    empty = url + "missing/"                      # answers 404
    source = dataclasses.replace(sources.SOURCES["mnist"], md5=md5, mirrors=(dead, empty, url))
    monkeypatch.setitem(sources.SOURCES, "mnist", source)

    data = load_dataset("mnist", timeout=5)
    np.testing.assert_array_equal(data.test_images, arrays["test_images"])
    cache = isolated_home / ".cache" / "lnsnet" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        name + ".gz" for name in sources.FILE_NAMES.values())
    assert str(cache) in data.source


def test_real_fetcher_with_nothing_listening_is_unavailable(monkeypatch, small_counts):
    dead = f"http://127.0.0.1:{_free_port()}/"
    source = dataclasses.replace(sources.SOURCES["mnist"], mirrors=(dead,))
    monkeypatch.setitem(sources.SOURCES, "mnist", source)
    with pytest.raises(DatasetUnavailable, match="mnist is not available"):
        load_dataset("mnist", timeout=5)


def test_unknown_dataset_and_bad_limits():
    with pytest.raises(ValueError, match="unknown data set 'cifar'"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="train_limit"):
        load_dataset("digits", train_limit=-1)


# ---- batches -----------------------------------------------------------------

def _epoch(n=103, batch_size=10, **kwargs):
    images = np.arange(n, dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    return list(iterate_batches(images, labels, batch_size, **kwargs))


def test_batches_depend_only_on_seed_and_epoch():
    first = _epoch(seed=1, epoch=0)
    again = _epoch(seed=1, epoch=0)
    assert all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(first, again))
    order = np.concatenate([images[:, 0, 0] for images, _ in first])
    assert sorted(order.tolist()) == list(range(103)), "every example once"
    other_epoch = np.concatenate([im[:, 0, 0] for im, _ in _epoch(seed=1, epoch=1)])
    other_seed = np.concatenate([im[:, 0, 0] for im, _ in _epoch(seed=2, epoch=0)])
    assert (order != other_epoch).any() and (order != other_seed).any()


def test_batch_types_and_shapes():
    batches = _epoch(seed=0, epoch=0)
    assert len(batches) == batch_count(103, 10) == 11
    images, labels = batches[-1]
    assert images.dtype == np.uint8 and images.shape == (3, 28, 28)
    assert labels.dtype == np.int64 and (labels == images[:, 0, 0] % 10).all()
    assert len(_epoch(seed=0, epoch=0, drop_last=True)) == batch_count(103, 10, True) == 10
    plain = np.concatenate([im[:, 0, 0] for im, _ in _epoch(seed=0, epoch=0, shuffle=False)])
    assert plain.tolist() == list(range(103))


def test_resume_from_batch_k_gives_the_rest_of_the_epoch():
    whole = _epoch(seed=7, epoch=3)
    resumed = _epoch(seed=7, epoch=3, start_batch=4)
    assert len(resumed) == len(whole) - 4
    for (a, la), (b, lb) in zip(whole[4:], resumed):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    assert _epoch(seed=7, epoch=3, start_batch=11) == []


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "at least 1"),
    (dict(batch_size=2.5), "batch_size"),
    (dict(seed=-1), "seed"),
    (dict(epoch=True), "epoch"),
    (dict(start_batch=-2), "start_batch"),
])
def test_batch_arguments_are_checked(kwargs, match):
    arguments = dict(batch_size=4, seed=0, epoch=0) | kwargs
    with pytest.raises(ValueError, match=match):
        _epoch(**arguments)


def test_images_and_labels_must_pair_up():
    with pytest.raises(ValueError, match="3 images but 4 labels"):
        list(iterate_batches(np.zeros((3, 28, 28), np.uint8), np.zeros(4, np.uint8), 2, 0, 0))


# ---- pixels to LNS -----------------------------------------------------------

class CountingFormat:
    """An LNSFormat that counts calls to encode: the encoder may call it only once."""

    def __init__(self, fmt):
        self.fmt, self.calls = fmt, 0

    def encode(self, values):
        self.calls += 1
        return self.fmt.encode(values)


@pytest.mark.parametrize("bits, gamma", [(8, 8), (6, 4), (16, 256)])
def test_pixel_encoder_is_a_table_lookup(bits, gamma):
    fmt = LNSFormat(bits=bits, gamma=gamma)
    counting = CountingFormat(fmt)
    encoder = PixelEncoder(counting)
    assert encoder.sign.dtype == np.int8 and encoder.exp.dtype == np.int32
    assert encoder.sign.shape == encoder.exp.shape == (256,)
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    images[0, 0, 0] = 0
    sign, exp = encoder(images)
    assert counting.calls == 1, "encoding images must not go back to float"
    assert sign.dtype == np.int8 and exp.dtype == np.int32 and sign.shape == images.shape
    want_sign, want_exp = fmt.encode(images / 255.0)
    np.testing.assert_array_equal(sign, want_sign)
    np.testing.assert_array_equal(exp, want_exp)
    assert sign[0, 0, 0] == 0 and exp[0, 0, 0] == 0
    assert encoder.exp[255] == 0 and encoder.sign[255] == 1, "pixel 255 is exactly 1.0"


def test_pixel_encoder_takes_only_uint8():
    encoder = PixelEncoder(LNSFormat(8, 8))
    with pytest.raises(TypeError, match="uint8"):
        encoder(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(TypeError, match="uint8"):
        encoder(np.zeros((2, 28, 28), np.int64))
