"""Data for lnsnet: MNIST, Fashion-MNIST and the synthetic `digits` set.

    load_dataset(name, data_dir=None, ...)  -> Dataset of uint8 images/labels
    iterate_batches(images, labels, batch_size, seed, epoch, ...)
    PixelEncoder(fmt)(images)               -> (sign, exponent), integers only

See DESIGN.md section 6; sources.py says where files are looked for.
"""
from lnsnet.data.digits import generate_digits, load_digits
from lnsnet.data.idx import DataError, read_idx, write_idx
from lnsnet.data.loader import (DATASETS, Dataset, PixelEncoder, batch_count, epoch_order,
                                iterate_batches, load_dataset)
from lnsnet.data.sources import DatasetUnavailable, cache_root, fetch_url, locate

__all__ = [
    "DATASETS", "DataError", "Dataset", "DatasetUnavailable", "PixelEncoder", "batch_count",
    "cache_root", "epoch_order", "fetch_url", "generate_digits", "iterate_batches",
    "load_dataset", "load_digits", "locate", "read_idx", "write_idx",
]
