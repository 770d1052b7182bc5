"""`lnsnet eval --checkpoint FILE`: the test accuracy of a saved model."""
from __future__ import annotations

import json
import sys

from lnsnet.data import DATASETS, DataError, load_dataset
from lnsnet.train import TrainConfig, evaluate


def configure(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a file written by lnsnet train --save")
    parser.add_argument("--dataset", choices=DATASETS, default=None,
                        help="default: the data set the model was trained on")
    parser.add_argument("--data-dir", default=None, help="a folder holding the IDX files")
    parser.add_argument("--test-limit", type=int, default=None, help="evaluate on the first N test images")


def run(args) -> int:
    from lnsnet.engines import read_run_state
    from lnsnet.engines import make_engine

    try:
        state = json.loads(read_run_state(args.checkpoint))
        config = TrainConfig(**state["config"])
        engine = make_engine(config)
        engine.load(args.checkpoint)
        name = args.dataset or config.dataset
        data = load_dataset(name, args.data_dir, train_limit=0, test_limit=args.test_limit)
    except (DataError, ValueError, OSError, KeyError) as err:
        print(f"lnsnet eval: error: {err}", file=sys.stderr)
        return 1
    accuracy = evaluate(engine, data.test_images, data.test_labels)
    print(f"test accuracy: {100 * accuracy:.2f}% on {len(data.test_labels)} {name} test images "
          f"({config.model}, {'float32' if config.float32 else f'{config.bits}-bit LNS'} {config.optimizer}, "
          f"checkpoint {args.checkpoint})")
    return 0
