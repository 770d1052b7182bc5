"""The `lnsnet` command: one subcommand per module, each module owning its options.

A subcommand module defines `configure(parser)` (adds its options) and
`run(args) -> int` (does the work, returns the exit status).
"""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "train": ("lnsnet.train_cli", "train a model (default: the mlp with LNS-Madam, 8-bit)"),
    "eval": ("lnsnet.eval_cli", "evaluate a saved checkpoint on a test set"),
    "bench": ("lnsnet.bench", "measure kernel and training speed against float32"),
    "explain": ("lnsnet.explain", "show how a number or an operation is done in LNS"),
    "plot": ("lnsnet.plots_cli", "draw one of lnsnet's figures to a PNG file"),
    "energy": ("lnsnet.energy", "estimate the energy of one training iteration"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lnsnet", description="Deep learning in a logarithmic number system (LNS-Madam).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sp = sub.add_parser(name, help=help_text, description=help_text)
        module.configure(sp)
        sp.set_defaults(run=module.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
