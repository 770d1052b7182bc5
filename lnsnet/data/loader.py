"""A data set by name, its batches in a seeded order, and its pixels as LNS.

load_dataset returns uint8 images and labels, whatever the source.
iterate_batches orders an epoch by a permutation that depends only on
(seed, epoch), so a run interrupted at batch k resumes with exactly the
batches it would have seen.  PixelEncoder maps uint8 pixels to LNS
(sign, exponent) through a 256-entry table: the one float computation is
building that table, once, like filling a ROM.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lnsnet.data.digits import load_digits
from lnsnet.data.sources import (DEFAULT_TIMEOUT, NUM_CLASSES, fetch_url, load_split,
                                 locate)

DATASETS = ("mnist", "fashion-mnist", "digits")


@dataclass(frozen=True, repr=False)
class Dataset:
    """Train and test splits: uint8 images (N, 28, 28), uint8 labels (N,)."""

    name: str
    source: str              # where it came from, for logs and reports
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    num_classes = NUM_CLASSES

    def __repr__(self):
        return (f"Dataset({self.name!r}, train={len(self.train_labels)}, "
                f"test={len(self.test_labels)}, source={self.source!r})")


def _check_limit(name: str, limit) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer))
                              or limit < 0):
        raise ValueError(f"{name} must be None or an integer >= 0, got {limit!r}")


def load_dataset(name: str, data_dir=None, *, train_limit: int | None = None,
                 test_limit: int | None = None, digits_seed: int = 0,
                 download: bool = True, fetch=fetch_url,
                 timeout: float = DEFAULT_TIMEOUT) -> Dataset:
    """Load 'mnist', 'fashion-mnist' or 'digits'.

    data_dir: a folder to look in first (for digits: the cache root).
    train_limit, test_limit: keep only the first images of a split.
    digits_seed: which digits set (each seed is a different one).
    download, fetch, timeout: whether and how missing files are downloaded
    (fetch(url, dest_path, timeout) writes url to dest_path; see sources).
    Raises DatasetUnavailable when a real data set is neither on disk nor
    downloadable, DataError when a file is corrupt.
    """
    _check_limit("train_limit", train_limit)
    _check_limit("test_limit", test_limit)
    if name == "digits":
        arrays, source = load_digits(digits_seed, data_dir, train_limit=train_limit,
                                     test_limit=test_limit)
    elif name in DATASETS:
        paths = locate(name, data_dir, download_missing=download, fetch=fetch, timeout=timeout)
        arrays = {}
        for split in ("train", "test"):
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = load_split(paths, split)
        folders = dict.fromkeys(str(path.parent) for path in paths.values())
        source = f"{name} from {', '.join(folders)}"
    else:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    return Dataset(name, source,
                   arrays["train_images"][:train_limit], arrays["train_labels"][:train_limit],
                   arrays["test_images"][:test_limit], arrays["test_labels"][:test_limit])


def batch_count(n: int, batch_size: int, drop_last: bool = False) -> int:
    """How many batches iterate_batches yields for n examples."""
    return n // batch_size if drop_last else -(-n // batch_size)


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The example indices of an epoch, in order; a function of (seed, epoch) only."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


def iterate_batches(images, labels, batch_size: int, seed: int, epoch: int,
                    shuffle: bool = True, drop_last: bool = False, start_batch: int = 0):
    """Yield (uint8 images, int64 labels) batches of one epoch.

    The order depends only on (seed, epoch); start_batch skips the first
    batches, so resuming at batch k yields what an uninterrupted epoch
    yields from batch k on.
    """
    if len(images) != len(labels):
        raise ValueError(f"iterate_batches: {len(images)} images but {len(labels)} labels")
    for value, what in ((batch_size, "batch_size"), (seed, "seed"), (epoch, "epoch"),
                        (start_batch, "start_batch")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"iterate_batches: {what} must be an integer >= 0, got {value!r}")
    if batch_size == 0:
        raise ValueError("iterate_batches: batch_size must be at least 1")
    order = epoch_order(len(labels), seed, epoch, shuffle)
    for k in range(start_batch, batch_count(len(labels), batch_size, drop_last)):
        index = order[k * batch_size:(k + 1) * batch_size]
        yield images[index], labels[index].astype(np.int64)


class PixelEncoder:
    """uint8 pixels -> LNS (sign int8, exponent int32) by table lookup.

    The table holds fmt.encode(p / 255) for p = 0..255, built once; encoding
    images is then pure integer indexing.  Pixel 0 is exact zero (sign 0).
    """

    def __init__(self, fmt):
        self.fmt = fmt
        sign, exp = fmt.encode(np.arange(256) / 255.0)
        self.sign = np.asarray(sign).astype(np.int8, casting="same_kind")
        self.exp = np.asarray(exp).astype(np.int32, casting="same_kind")
        if self.sign.shape != (256,) or self.exp.shape != (256,):
            raise ValueError(f"PixelEncoder: {fmt} encoded 256 pixels into shapes "
                             f"{self.sign.shape} and {self.exp.shape}")

    def __call__(self, images) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise TypeError(f"PixelEncoder: images must be uint8, got {images.dtype}")
        return self.sign[images], self.exp[images]

    def __repr__(self):
        return f"PixelEncoder({self.fmt})"
