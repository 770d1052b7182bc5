"""Madam vs SGD vs Adam as precision drops: forward bits 8, 6, 5, 4 and update (master) bits 16, 12, 10.

Run:  python demos/bit_width_sweep.py [--train 4000] [--epochs 1] [--out sweep]

Every run trains the same mlp from the same initial weights on the same
batches; only the formats and the optimizer change.  The claim checked: at
few bits Madam's multiplicative update survives quantization, while the
additive updates of SGD and Adam are rounded away.  It prints a table and
writes sweep.json and sweep.png.
"""
import argparse
import json

from lnsnet.data import DatasetUnavailable, load_dataset
from lnsnet.engines import make_engine
from lnsnet.plots import bit_width_sweep_figure
from lnsnet.train import TrainConfig, Trainer

FORWARD_BITS = (8, 6, 5, 4)
UPDATE_BITS = (16, 12, 10)
OPTIMIZERS = ("madam", "sgd", "adam")
# A B-bit forward format spans (2**(B-1) - 2) / gamma octaves.  Gamma 8 at 8 bits
# spans 15.75; at fewer bits the base grows (gamma shrinks) to keep a usable
# range: 6 bits gamma 2 (15 octaves), 5 bits gamma 1 (14), 4 bits gamma 1 (6).
FORWARD_GAMMA = {8: 8, 6: 2, 5: 1, 4: 1}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--train", type=int, default=4000, help="training images")
parser.add_argument("--test", type=int, default=2000, help="test images")
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--out", default="sweep", help="output name (writes NAME.json, NAME.png)")
args = parser.parse_args()

try:
    data = load_dataset("mnist", train_limit=args.train, test_limit=args.test)
except DatasetUnavailable:
    data = load_dataset("digits", train_limit=args.train, test_limit=args.test)
print(f"{data.name}: {len(data.train_labels)} train, {len(data.test_labels)} test images")

rows = []
print(f"{'optimizer':>9} {'fwd bits':>8} {'gamma':>5} {'upd bits':>8} {'test acc':>8}")
for optimizer in OPTIMIZERS:
    for forward_bits in FORWARD_BITS:
        for update_bits in UPDATE_BITS:
            config = TrainConfig(dataset=data.name, model="mlp", optimizer=optimizer,
                                 bits=forward_bits, gamma=FORWARD_GAMMA[forward_bits],
                                 update_bits=update_bits, epochs=args.epochs, batch_size=64,
                                 train_limit=args.train, test_limit=args.test)
            history = Trainer(config, make_engine(config), data, progress=False).run()
            accuracy = history[-1].test_accuracy
            rows.append({"optimizer": optimizer, "forward_bits": forward_bits,
                         "update_bits": update_bits, "test_accuracy": accuracy})
            print(f"{optimizer:>9} {forward_bits:>8} {FORWARD_GAMMA[forward_bits]:>5} "
                  f"{update_bits:>8} {100 * accuracy:>7.2f}%", flush=True)

with open(f"{args.out}.json", "w") as fh:
    json.dump(rows, fh, indent=2)
bit_width_sweep_figure(rows, path=f"{args.out}.png")
print(f"wrote {args.out}.json and {args.out}.png")
