"""`lnsnet train`: train a model with LNS-Madam (or SGD, Adam, or the float32 baseline) from one command."""
from __future__ import annotations

import argparse
import json
import sys

from lnsnet.data import DATASETS, DataError, DatasetUnavailable, load_dataset
from lnsnet.kernels import MODES
from lnsnet.train import (MODELS, OPTIMIZERS, SCHEDULES, Diverged, Interrupted, TrainConfig, Trainer,
                          metrics_record)

DEFAULT_DATASET = "mnist"
FALLBACK_DATASET = "digits"
INTERRUPT_PATH = "lnsnet-interrupted.npz"


def int_in(low: int, high: int | None = None):
    """An argparse type: an integer in low..high."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"{value} is out of range {low}..{high if high is not None else 'inf'}")
        return value
    return parse


def power_of_two(text: str) -> int:
    value = int_in(1, 2 ** 16)(text)
    if value & (value - 1):
        raise argparse.ArgumentTypeError(f"{value} is not a power of two")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive finite number")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--dataset", choices=DATASETS, default=None,
                        help=f"default {DEFAULT_DATASET}; falls back to {FALLBACK_DATASET} when MNIST "
                             "cannot be found or fetched")
    parser.add_argument("--data-dir", default=None, help="a folder holding the IDX files")
    parser.add_argument("--model", choices=MODELS, default=None, help=f"default {defaults.model}")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help=f"default {defaults.optimizer}")
    parser.add_argument("--bits", type=int_in(2, 16), default=None,
                        help=f"forward/backward bits (default {defaults.bits})")
    parser.add_argument("--gamma", type=power_of_two, default=None,
                        help=f"LNS base 2**(1/gamma) (default {defaults.gamma})")
    parser.add_argument("--update-bits", type=int_in(2, 32), default=None,
                        help=f"master weight bits (default {defaults.update_bits})")
    parser.add_argument("--accumulate", choices=MODES, default=None,
                        help=f"how sums are accumulated (default {defaults.accumulate})")
    parser.add_argument("--epochs", type=int_in(1), default=None, help=f"default {defaults.epochs}")
    parser.add_argument("--batch-size", type=int_in(1), default=None, help=f"default {defaults.batch_size}")
    parser.add_argument("--lr", type=positive_float, default=None,
                        help="learning rate (default: madam 0.01, sgd 0.05, adam 0.001)")
    parser.add_argument("--schedule", choices=SCHEDULES, default=None,
                        help=f"lr over the run: constant, or cosine (half a cosine from --lr down to 0 "
                             f"over all epochs); default {defaults.schedule}")
    parser.add_argument("--seed", type=int_in(0), default=None, help=f"default {defaults.seed}")
    parser.add_argument("--train-limit", type=int_in(1), default=None, help="train on the first N images only")
    parser.add_argument("--test-limit", type=int_in(1), default=None, help="test on the first N images only")
    parser.add_argument("--float32", action="store_true", default=None,
                        help="train the same model, initialisation and batches in float32 (the baseline)")
    parser.add_argument("--save", default=None, help="checkpoint file, written after every epoch")
    parser.add_argument("--resume", default=None, help="continue the run saved in this checkpoint")
    parser.add_argument("--metrics", default=None, help="write per-epoch metrics to this JSON file")
    parser.add_argument("--plot", default=None, help="draw the training curves to this PNG file")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


CONFIG_OPTIONS = ("dataset", "model", "optimizer", "bits", "gamma", "update_bits", "accumulate",
                  "epochs", "batch_size", "lr", "schedule", "seed", "float32", "train_limit",
                  "test_limit")


def config_from(args, base: TrainConfig | None = None) -> TrainConfig:
    """The run's config: the checkpoint's when resuming, with options given here on top."""
    values = vars(base) if base is not None else vars(TrainConfig())
    values = dict(values)
    for name in CONFIG_OPTIONS:
        given = getattr(args, name)
        if given is not None:
            values[name] = given
    if values["update_bits"] < values["bits"]:
        raise ValueError(f"--update-bits {values['update_bits']} is below --bits {values['bits']}: "
                         "the master weights must be at least as wide as the forward copy")
    return TrainConfig(**values)


def load_data(config: TrainConfig, args, explicit: bool):
    """The data set, falling back to digits (one line says why) when the default one is missing."""
    try:
        return load_dataset(config.dataset, args.data_dir, train_limit=config.train_limit,
                            test_limit=config.test_limit), config
    except DatasetUnavailable as err:
        if explicit:
            raise
        print(f"{err}\n-> training on the synthetic '{FALLBACK_DATASET}' set instead.", file=sys.stderr)
        config.dataset = FALLBACK_DATASET
        return load_dataset(FALLBACK_DATASET, args.data_dir, train_limit=config.train_limit,
                            test_limit=config.test_limit), config


def describe(config: TrainConfig) -> str:
    if config.float32:
        what = f"float32 {config.optimizer}"
    else:
        what = (f"LNS-{config.optimizer.capitalize() if config.optimizer != 'sgd' else 'SGD'} "
                f"{config.bits}-bit (gamma {config.gamma}, {config.update_bits}-bit master, "
                f"{config.accumulate})")
    lr = f"lr {config.learning_rate}" + ("" if config.schedule == "constant" else f" ({config.schedule})")
    return f"{config.model} on {config.dataset}, {what}, {lr}, batch {config.batch_size}"


def run(args) -> int:
    from lnsnet.engines import make_engine, read_run_state

    try:
        base = None
        if args.resume:
            base = TrainConfig(**json.loads(read_run_state(args.resume))["config"])
        config = config_from(args, base)
        dataset, config = load_data(config, args, explicit=args.dataset is not None or base is not None)
        engine = make_engine(config)
        trainer = Trainer(config, engine, dataset, progress=not args.quiet,
                          checkpoint_path=args.save, interrupt_path=args.save or INTERRUPT_PATH)
        if args.resume:
            trainer.restore_run_state(json.loads(engine.load(args.resume)))
            trainer.config.epochs = config.epochs
            print(f"resuming {args.resume} at epoch {trainer.position.epoch + 1}, "
                  f"batch {trainer.position.batch}")
        print(f"training {describe(config)}; {len(dataset.train_labels)} train / "
              f"{len(dataset.test_labels)} test images ({dataset.source})", flush=True)
        history = trainer.run()
    except KeyboardInterrupt:
        # Before the training loop holds signals: no step was taken, nothing to save.
        print("\ninterrupted before training started", file=sys.stderr)
        return 130
    except Interrupted as stop:
        print(f"\n{stop}. Resume with: lnsnet train --resume {stop.path}", file=sys.stderr)
        return 130
    except Diverged as err:
        kept = f"; the last good checkpoint is {args.save}" if args.save else ""
        print(f"\nlnsnet train: the run diverged: {err}{kept}", file=sys.stderr)
        return 1
    except (DataError, ValueError, OSError) as err:
        print(f"lnsnet train: error: {err}", file=sys.stderr)
        return 1
    final = history[-1]
    print(f"test accuracy: {100 * final.test_accuracy:.2f}% ({describe(config)}, "
          f"{config.epochs} epoch(s), {sum(m.seconds for m in history):.1f} s training)")
    record = metrics_record(config, history, dataset_source=dataset.source, label=describe(config))
    if args.metrics:
        with open(args.metrics, "w") as fh:
            json.dump(record, fh, indent=2)
    if args.plot:
        from lnsnet.plots import training_curves_figure
        training_curves_figure([record], path=args.plot)
        print(f"training curves: {args.plot}")
    return 0
