"""`lnsnet plot NAME --out FILE [--input FILE ...]`: draw one of lnsnet's figures to a PNG.

    formats        representable values of 8-bit LNS beside int8, fp8 E4M3 and bfloat16
    tables         SB and DB, their tables and the table rounding (--gamma)
    update-error   update quantization error of SGD, Adam and Madam: measured on a small
                   seeded problem (a few seconds), or drawn from --input DATA.json
    training       training curves from one or more `lnsnet train --metrics` files
    bit-sweep      the bit-width sweep from a JSON or CSV results file
    lr-sweep       the learning-rate sweep from a results file, or --run to train it (minutes)

--save-data FILE writes the data of update-error or a --run lr-sweep as JSON, to
redraw later with --input.  The drawing is lnsnet.plots; this module only reads
options and files.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from lnsnet import plots
from lnsnet.format import LNSFormat


def _formats(args):
    return plots.number_formats_figure(LNSFormat(args.bits, args.gamma), path=args.out)


def _tables(args):
    return plots.gaussian_logs_figure(args.gamma, path=args.out)


def _update_error(args):
    if args.input:
        data = _read_json(_one_input(args))
    else:
        data = plots.update_error_data()
        _save(args, data)
    return plots.update_error_figure(data, path=args.out)


def _training(args):
    _need_input(args, "one or more `lnsnet train --metrics` JSON files")
    return plots.training_curves_figure(args.input, path=args.out)


def _bit_sweep(args):
    _need_input(args, "the sweep's results (JSON or CSV rows of optimizer, forward_bits, "
                      "update_bits, test_accuracy)")
    return plots.bit_width_sweep_figure(plots.load_rows(_one_input(args), plots.SWEEP_KEYS),
                                        path=args.out)


def _lr_sweep(args):
    if args.run_sweep:
        rows = plots.run_lr_sweep(progress=True)
        _save(args, rows)
    else:
        _need_input(args, "the sweep's results (JSON or CSV rows of optimizer, lr, test_accuracy), "
                          "or --run to train the sweep now")
        rows = plots.load_rows(_one_input(args), plots.LR_KEYS)
    return plots.lr_sweep_figure(rows, path=args.out)


FIGURES = {
    "formats": (_formats, "representable values of 8-bit LNS, int8, fp8 E4M3, bfloat16"),
    "tables": (_tables, "SB and DB against the exact curves"),
    "update-error": (_update_error, "update quantization error of SGD, Adam, Madam"),
    "training": (_training, "training curves from --metrics files"),
    "bit-sweep": (_bit_sweep, "the bit-width sweep"),
    "lr-sweep": (_lr_sweep, "the learning-rate sweep"),
}


def _need_input(args, what: str) -> None:
    if not args.input:
        raise ValueError(f"'{args.name}' draws {what}: give them with --input")


def _one_input(args) -> Path:
    if len(args.input) != 1:
        raise ValueError(f"'{args.name}' takes one --input file, got {len(args.input)}")
    return Path(args.input[0])


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read JSON ({error})") from None


def _save(args, data) -> None:
    if args.save_data:
        Path(args.save_data).write_text(json.dumps(data, indent=1))
        print(f"data written to {args.save_data}")


def configure(parser):
    parser.add_argument("name", choices=tuple(FIGURES), metavar="NAME",
                        help="; ".join(f"{name}: {text}" for name, (_, text) in FIGURES.items()))
    parser.add_argument("--out", required=True, metavar="FILE", help="the PNG file to write")
    parser.add_argument("--input", nargs="+", metavar="FILE", help="data file(s) the figure is drawn from")
    parser.add_argument("--bits", type=int, default=8, help="formats: the LNS bit width (default 8)")
    parser.add_argument("--gamma", type=int, default=8, help="formats, tables: the LNS gamma (default 8)")
    # dest run_sweep: `lnsnet` keeps each subcommand's entry point in args.run.
    parser.add_argument("--run", dest="run_sweep", action="store_true",
                        help="lr-sweep: train the sweep now (minutes)")
    parser.add_argument("--save-data", metavar="FILE",
                        help="update-error, lr-sweep --run: also write the data drawn as JSON")


def run(args) -> int:
    draw, _ = FIGURES[args.name]
    try:
        draw(args)
    except (ValueError, OSError) as error:
        print(f"lnsnet plot {args.name}: {error}", file=sys.stderr)
        return 2
    print(f"{args.name} figure written to {args.out}")
    return 0
