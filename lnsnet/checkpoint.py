"""Checkpoints: a model, its optimizer and schedule in one .npz of integer codes.

The file holds, as plain NumPy arrays (no pickles; it is loaded with
allow_pickle=False, so a file can never run code):

    lnsnet_checkpoint            int64 format version
    model/<name>.codes|.scale|.format      Module.state_dict(): B-bit codes, t, (bits, gamma)
    optimizer/<key>              Optimizer.state_dict(): moment codes, step counts,
                                 hyperparameters, the rounding generator's state
    schedule/<key>               Schedule.state_dict()
    extra/<key>                  caller's strings (e.g. a training loop's position)

Everything a step depends on is in it, so loading a checkpoint and training
on gives bit-for-bit the weights of a run that never stopped.

Writing is atomic: the arrays go to a temporary file in the same directory,
which is flushed to disk and then renamed over the target, so a crash leaves
either the old checkpoint or the new one.  Loading checks every section
against the model, optimizer and schedule before it changes any of them; a
truncated, foreign or mismatched file raises ValueError saying what is wrong.
Before any array is read, each member's .npy header is checked against the
bytes the member really holds, and all members together against max_bytes,
so a lying header or a zip bomb cannot make loading allocate gigabytes.
"""
from __future__ import annotations

import contextlib
import math
import os
import tempfile
import zipfile
import zlib

import numpy as np

VERSION = 1
MAGIC = "lnsnet_checkpoint"
SECTIONS = ("model", "optimizer", "schedule", "extra")
NPY_MAGIC = b"\x93NUMPY"
# The uncompressed members of one checkpoint; lnsnet's largest models need a few MB.
DEFAULT_MAX_BYTES = 1 << 30


def write_npz(path, arrays: dict[str, np.ndarray], extra: dict[str, str] | None = None) -> None:
    """Write arrays (and extra strings under "extra/") atomically to path as an .npz."""
    content = {MAGIC: np.array(VERSION, np.int64), **arrays}
    for key, text in (extra or {}).items():
        if not isinstance(text, str):
            raise ValueError(f"checkpoint extra {key!r} must be a string, got {type(text).__name__}")
        content[f"extra/{key}"] = np.array(text)
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        # A signal can land just after the rename, when tmp is gone already.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_npz(path, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(arrays, extra strings) of a file written by write_npz; ValueError if it is not one."""
    path = os.fspath(path)
    with open(path, "rb") as fh:  # a missing file stays a FileNotFoundError
        try:
            if fh.read(len(NPY_MAGIC)) == NPY_MAGIC:
                # np.load would read the whole array, however large its header says it is
                raise ValueError("it holds a single .npy array, not an .npz archive")
            fh.seek(0)
            npz = np.load(fh, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ValueError(f"it holds a single {type(npz).__name__}, not an .npz archive")
            with npz:
                _check_members(npz.zip, max_bytes)
                arrays = {key: npz[key] for key in npz.files}
        # zipfile's own ways of refusing a damaged archive: NotImplementedError for an
        # unknown compression method, RuntimeError for a member flagged as encrypted.
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error,
                NotImplementedError, RuntimeError) as err:
            raise ValueError(f"{path} is not a readable lnsnet checkpoint (truncated or not an .npz): "
                             f"{err}") from None
    version = arrays.pop(MAGIC, None)
    if version is None:
        raise ValueError(f"{path} is an .npz but not an lnsnet checkpoint (no {MAGIC!r} entry)")
    if version.shape != () or version.dtype.kind != "i" or int(version) != VERSION:
        raise ValueError(f"{path} is an lnsnet checkpoint of format version {version}, "
                         f"this lnsnet reads version {VERSION}")
    extra = {}
    for key in [k for k in arrays if k.startswith("extra/")]:
        value = arrays.pop(key)
        if value.dtype.kind != "U" or value.shape != ():
            raise ValueError(f"{path}: {key} should be a string, it is {value.dtype} of shape {value.shape}")
        extra[key[len("extra/"):]] = str(value)
    return arrays, extra


def _check_members(archive: zipfile.ZipFile, max_bytes: int) -> None:
    """Raise ValueError unless every member is a plain .npy array of exactly the size its
    header declares, and all of them together fit in max_bytes (sizes from the zip
    directory, which bounds what each member can deliver)."""
    members = archive.infolist()
    total = sum(info.file_size for info in members)
    if total > max_bytes:
        raise ValueError(f"its members hold {total} bytes, more than the {max_bytes}-byte limit")
    for info in members:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise ValueError(f"{info.filename} is in .npy format version {version}, "
                                 "not one numpy.savez writes for plain arrays")
            if dtype.hasobject:
                raise ValueError(f"{info.filename} holds Python objects (pickled data), "
                                 "which lnsnet never loads")
            declared = math.prod(shape) * dtype.itemsize
            held = info.file_size - member.tell()
            if declared != held:
                raise ValueError(f"{info.filename} declares a {dtype} array of shape {shape} "
                                 f"({declared} bytes) but holds {held} bytes")


def _section(arrays: dict, name: str) -> dict:
    prefix = name + "/"
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def save(path, model, optimizer=None, schedule=None, extra: dict[str, str] | None = None) -> None:
    """Save the model's master weights and, if given, the optimizer's and schedule's state."""
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    for name, part in (("optimizer", optimizer), ("schedule", schedule)):
        if part is not None:
            arrays.update({f"{name}/{k}": v for k, v in part.state_dict().items()})
    write_npz(path, arrays, extra)


def load(path, model, optimizer=None, schedule=None) -> dict[str, str]:
    """Restore what save() wrote into model (and optimizer, schedule if given); returns the extras.

    Every part is checked before any is changed: on ValueError all of them are as they were.
    """
    arrays, extra = read_npz(path)
    unknown = sorted({k.split("/", 1)[0] for k in arrays} - set(SECTIONS))
    if unknown:
        raise ValueError(f"{path}: unexpected entries {unknown}; not a model checkpoint")
    checked = []
    for name, part in (("optimizer", optimizer), ("schedule", schedule)):
        if part is None:
            continue
        section = _section(arrays, name)
        if not section:
            raise ValueError(f"{path} holds no {name} state")
        try:
            checked.append((part, part.validate_state_dict(section)))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    try:
        model.load_state_dict(_section(arrays, "model"))  # checks everything, then assigns
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    for part, parsed in checked:
        part.install_state(parsed)
    return extra
