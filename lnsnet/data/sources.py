"""Where MNIST and Fashion-MNIST come from: local directories, else the mirrors.

Each of the four IDX files of a data set is looked for, in order, in
  1. the data_dir argument (the folder itself, then its mnist/ or
     fashion-mnist/ subfolder),
  2. $LNSNET_DATA/<subfolder>,
  3. ~/.cache/lnsnet/<subfolder>,
  4. system folders (Debian's dataset-fashion-mnist package installs
     /usr/share/datasets/fashion-mnist),
under its usual name, gzip-compressed or not.  Files that are still missing
are downloaded into the cache folder ($LNSNET_DATA, default ~/.cache/lnsnet,
then the subfolder): into a temporary file first, checked against the
official MD5 checksum, then renamed into place; a mismatch deletes the
temporary file and raises DataError.  Files found locally may have been
supplied by the user (or repacked by a distribution, as Debian's are), so
they are checked for structure when loaded (see read_split), not against
the checksums.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lnsnet.data.idx import DataError, partial_path, read_idx

DEFAULT_TIMEOUT = 30.0          # seconds, per connection attempt and per read
MAX_DOWNLOAD_BYTES = 64 << 20   # the largest official file is 26 MB

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SPLIT_COUNTS = {"train": 60_000, "test": 10_000}
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10


class DatasetUnavailable(DataError):
    """A data set is neither on disk nor downloadable (offline, mirrors down)."""


@dataclass(frozen=True)
class Source:
    """One published data set: its files' checksums, mirrors and local homes."""

    name: str
    subfolder: str
    md5: dict              # role -> MD5 of the official .gz file
    mirrors: tuple         # base URLs, tried in order
    system_dirs: tuple     # folders a distribution package installs
    how_to_get: str        # the end of the "unavailable" message


# Checksums as published with the data sets (and used by torchvision).
SOURCES = {
    "mnist": Source(
        name="mnist",
        subfolder="mnist",
        md5={
            "train_images": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train_labels": "d53e105ee54ea40749a09fcbcd1e9432",
            "test_images": "9fb629c4189551a2d022fa330f9573f3",
            "test_labels": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        system_dirs=(),
        how_to_get="connect to the internet, or copy the four IDX files into "
                   "~/.cache/lnsnet/mnist (or pass --data-dir)",
    ),
    "fashion-mnist": Source(
        name="fashion-mnist",
        subfolder="fashion-mnist",
        md5={
            "train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
            "test_images": "bef4ecab320f06d8554ea6380940ec79",
            "test_labels": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
        how_to_get="run 'apt-get install dataset-fashion-mnist', connect to the internet, "
                   "or copy the four IDX files into ~/.cache/lnsnet/fashion-mnist "
                   "(or pass --data-dir)",
    ),
}


def get_source(name: str) -> Source:
    if name not in SOURCES:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(SOURCES)}")
    return SOURCES[name]


def cache_root() -> Path:
    """$LNSNET_DATA, or ~/.cache/lnsnet: where downloads and generated data go."""
    configured = os.environ.get("LNSNET_DATA")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "lnsnet"


def search_dirs(source: Source, data_dir=None) -> list[Path]:
    """The folders looked in, in order (see the module docstring)."""
    dirs = []
    if data_dir is not None:
        dirs += [Path(data_dir).expanduser(), Path(data_dir).expanduser() / source.subfolder]
    configured = os.environ.get("LNSNET_DATA")
    if configured:
        dirs.append(Path(configured).expanduser() / source.subfolder)
    dirs.append(Path.home() / ".cache" / "lnsnet" / source.subfolder)
    dirs += list(source.system_dirs)
    return list(dict.fromkeys(dirs))   # drop repeats, keep the order


def find_local(role: str, dirs) -> Path | None:
    """The first existing file for role in dirs, gzip-compressed or not."""
    for folder in dirs:
        for name in (FILE_NAMES[role] + ".gz", FILE_NAMES[role]):
            if (folder / name).is_file():
                return folder / name
    return None


def fetch_url(url: str, dest: Path, timeout: float) -> None:
    """Download url into dest (streamed, at most MAX_DOWNLOAD_BYTES)."""
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        copied = 0
        while chunk := response.read(1 << 16):
            copied += len(chunk)
            if copied > MAX_DOWNLOAD_BYTES:
                raise OSError(f"{url} sent more than {MAX_DOWNLOAD_BYTES} bytes")
            out.write(chunk)


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download(source: Source, role: str, dest_dir: Path, *, fetch=fetch_url,
             timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Fetch one official file into dest_dir, verified; returns its path.

    Mirrors are tried in order while they fail to answer; an OSError from
    every one becomes DatasetUnavailable.  A file that arrives with the
    wrong checksum is deleted and raises DataError at once.
    """
    name = FILE_NAMES[role] + ".gz"
    dest_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    for base in source.mirrors:
        url = base + name
        tmp = partial_path(dest_dir / name)
        try:
            fetch(url, tmp, timeout)
            _verify(tmp, url, source.md5[role])
            os.replace(tmp, dest_dir / name)
            return dest_dir / name
        except (OSError, http.client.HTTPException) as err:
            failures.append(f"{url}: {err}")
        finally:
            tmp.unlink(missing_ok=True)   # whatever went wrong, no partial file stays
    raise DatasetUnavailable(f"could not download {name} ({'; '.join(failures)})")


def _verify(path: Path, url: str, expected: str) -> None:
    """Raise DataError unless path has the official MD5 (download then deletes it)."""
    actual = md5_of(path)
    if actual != expected:
        raise DataError(f"{url}: checksum mismatch, expected MD5 {expected}, got {actual}; "
                        f"the partial download {path} was deleted")


def locate(name: str, data_dir=None, *, download_missing: bool = True, fetch=fetch_url,
           timeout: float = DEFAULT_TIMEOUT) -> dict:
    """Paths of the four files of a data set (role -> Path), downloading what is missing.

    Raises DatasetUnavailable, with a one-line message saying which files are
    missing, where they were looked for and how to get them, if some file is
    neither found nor downloadable.
    """
    source = get_source(name)
    dirs = search_dirs(source, data_dir)
    found = {role: find_local(role, dirs) for role in ROLES}
    missing = [role for role in ROLES if found[role] is None]
    reason = "downloads disabled"
    try:
        for role in missing if download_missing else ():
            found[role] = download(source, role, cache_root() / source.subfolder,
                                   fetch=fetch, timeout=timeout)
    except DatasetUnavailable as err:
        reason = str(err)
    still_missing = [role for role in ROLES if found[role] is None]
    if still_missing:
        raise DatasetUnavailable(_unavailable_message(source, still_missing, dirs, reason))
    return found


def _unavailable_message(source: Source, missing, dirs, reason: str) -> str:
    files = ", ".join(FILE_NAMES[role] + "[.gz]" for role in missing)
    looked = ", ".join(str(d) for d in dirs)
    # One line whatever the network error text holds, so a caller can print it as is.
    return (f"{source.name} is not available: missing {files}; looked in {looked}; "
            f"{reason}. To get it: {source.how_to_get}.").replace("\n", " ")


def read_split(images_path, labels_path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (count, 28, 28) and labels (count,) from two IDX files, both uint8, checked.

    The structure is what is checked: dtype, dimensions, the count, file
    lengths (read_idx) and labels 0..9.
    """
    images = read_idx(images_path, expect_dtype=np.uint8, expect_shape=(count, *IMAGE_SHAPE))
    labels = read_idx(labels_path, expect_dtype=np.uint8, expect_shape=(count,))
    if labels.size and labels.max() >= NUM_CLASSES:
        bad = int(np.argmax(labels >= NUM_CLASSES))
        raise DataError(f"{labels_path}: label {int(labels[bad])} at index {bad}, "
                        f"expected 0..{NUM_CLASSES - 1}")
    return images, labels


def load_split(paths: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One split (train: 60,000, test: 10,000) of a located data set (see locate)."""
    return read_split(paths[f"{split}_images"], paths[f"{split}_labels"], SPLIT_COUNTS[split])
