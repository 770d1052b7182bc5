"""The synthetic digits set: deterministic, MNIST-shaped, cached, not too easy.

HOME and LNSNET_DATA point into tmp_path, so the real cache is never touched.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from lnsnet.data import digits, load_dataset
from lnsnet.data.sources import FILE_NAMES


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LNSNET_DATA", str(tmp_path / "data"))


@pytest.fixture
def small_digits(monkeypatch):
    """A full digits set of 300 + 100 images, so that caching is quick to test."""
    monkeypatch.setattr(digits, "SPLIT_SIZES", {"train": 300, "test": 100})


def test_layout_is_mnist_like():
    images, labels = digits.generate_digits(500, seed=0)
    assert images.dtype == np.uint8 and images.shape == (500, 28, 28)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == set(range(10))
    assert images.max() == 255 and np.median(images) < 30, "white ink on a dark ground"
    # The ink's centre of mass sits near the middle, as MNIST's does.
    rows = (images.sum(axis=2) * np.arange(28)).sum(axis=1) / images.sum(axis=(1, 2))
    cols = (images.sum(axis=1) * np.arange(28)).sum(axis=1) / images.sum(axis=(1, 2))
    assert abs(rows.mean() - 13.5) < 1 and abs(cols.mean() - 13.5) < 1
    assert images[:, :2].mean() < 20 and images[:, -2:].mean() < 20, "margins mostly empty"


def test_same_seed_same_bytes_other_seed_other_images():
    first, first_labels = digits.generate_digits(300, seed=11)
    again, again_labels = digits.generate_digits(300, seed=11)
    assert first.tobytes() == again.tobytes() and first_labels.tobytes() == again_labels.tobytes()
    other, _ = digits.generate_digits(300, seed=12)
    test_split, _ = digits.generate_digits(300, seed=11, split="test")
    assert (first != other).any() and (first != test_split).any()


def test_a_subset_is_the_start_of_the_full_set():
    longer, longer_labels = digits.generate_digits(digits.CHUNK + 5, seed=3)
    shorter, shorter_labels = digits.generate_digits(7, seed=3)
    np.testing.assert_array_equal(shorter, longer[:7])
    np.testing.assert_array_equal(shorter_labels, longer_labels[:7])


def test_each_image_shows_its_label():
    templates = digits.build_templates()
    labels = np.random.default_rng(0).integers(0, 10, 1000)
    warp = digits.draw_distortion(np.random.default_rng(1), labels)
    np.testing.assert_array_equal(templates.digit[warp.template], labels)
    assert len(templates.ink) == len(digits.FONTS) * 10 * digits.PEN_WIDTHS


def test_restroke_widens_and_narrows():
    line = np.zeros((9, 9), np.float32)
    line[:, 4] = 1
    assert digits.restroke(line, 1)[4].tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0]
    assert digits.restroke(digits.restroke(line, 2), -1)[4].sum() == 3


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        digits.generate_digits(3, seed=0, split="valid")
    with pytest.raises(ValueError, match=">= 0"):
        digits.generate_digits(3, seed=-1)
    images, labels = digits.generate_digits(0, seed=0)
    assert images.shape == (0, 28, 28) and labels.shape == (0,)


def _least_squares_accuracy(train_images, train_labels, test_images, test_labels) -> float:
    """A linear classifier in float64: ridge regression onto one-hot labels."""
    def features(images):
        flat = images.reshape(len(images), -1) / 255.0
        return np.hstack([flat, np.ones((len(images), 1))])

    x = features(train_images)
    weights = np.linalg.solve(x.T @ x + 300.0 * np.eye(x.shape[1]),
                              x.T @ np.eye(10)[train_labels])
    predictions = (features(test_images) @ weights).argmax(axis=1)
    return float(np.mean(predictions == test_labels))


def test_a_linear_model_learns_it_but_does_not_master_it():
    data = load_dataset("digits", train_limit=8000, test_limit=2000)
    accuracy = _least_squares_accuracy(data.train_images, data.train_labels,
                                       data.test_images, data.test_labels)
    # About 0.79 with seed 0; the full set gives ~0.79 least squares, ~0.90 logistic.
    assert 0.70 < accuracy < 0.99


def test_limits_generate_a_subset_without_caching(tmp_path):
    data = load_dataset("digits", train_limit=50, test_limit=20, digits_seed=4)
    assert data.train_images.shape == (50, 28, 28) and data.test_labels.shape == (20,)
    assert "not cached" in data.source
    assert not (tmp_path / "data").exists()
    np.testing.assert_array_equal(data.train_images, digits.generate_digits(50, 4)[0])


def test_cache_is_written_once_then_read(tmp_path, small_digits):
    first = load_dataset("digits", digits_seed=5)
    folder = tmp_path / "data" / f"digits-v{digits.DIGITS_VERSION}-seed5"
    assert "generated and cached" in first.source and str(folder) in first.source
    assert sorted(p.name for p in folder.iterdir()) == sorted([*FILE_NAMES.values(), "SHA256SUMS"])
    second = load_dataset("digits", digits_seed=5, train_limit=10)
    assert "from" in second.source and "generated" not in second.source
    np.testing.assert_array_equal(second.train_images, first.train_images[:10])
    np.testing.assert_array_equal(second.test_labels, first.test_labels)


def test_same_seed_gives_byte_identical_cache_files(tmp_path, small_digits):
    load_dataset("digits", tmp_path / "one", digits_seed=2)
    load_dataset("digits", tmp_path / "two", digits_seed=2)
    one = tmp_path / "one" / f"digits-v{digits.DIGITS_VERSION}-seed2"
    two = tmp_path / "two" / f"digits-v{digits.DIGITS_VERSION}-seed2"
    for name in [*FILE_NAMES.values(), "SHA256SUMS"]:
        assert (one / name).read_bytes() == (two / name).read_bytes()


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_a_damaged_cache_is_regenerated(tmp_path, small_digits, damage):
    first = load_dataset("digits", digits_seed=6)
    path = tmp_path / "data" / f"digits-v{digits.DIGITS_VERSION}-seed6" / FILE_NAMES["train_images"]
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[1000] ^= 0x10
        path.write_bytes(data)
    elif damage == "truncate":
        path.write_bytes(data[:-5])
    else:
        path.unlink()
    with pytest.warns(UserWarning, match="digits cache is invalid.*train-images-idx3-ubyte"):
        again = load_dataset("digits", digits_seed=6)
    np.testing.assert_array_equal(again.train_images, first.train_images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "from" in load_dataset("digits", digits_seed=6).source
