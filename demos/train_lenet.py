"""Train LeNet-5 with LNS-Madam at 8 bits through the same Trainer that `lnsnet train` uses.

Run:  python demos/train_lenet.py       (a few minutes; Fashion-MNIST if installed, else digits)

Fashion-MNIST comes with Debian's dataset-fashion-mnist package
(apt-get install dataset-fashion-mnist); without it the demo uses digits.
"""
from lnsnet.data import DatasetUnavailable, load_dataset
from lnsnet.engines import make_engine
from lnsnet.train import TrainConfig, Trainer

# schedule="cosine" lowers the lr from 0.01 to 0 over the run (`lnsnet train --schedule cosine`);
# the README's 10-epoch runs on all of Fashion-MNIST use it.
config = TrainConfig(model="lenet", optimizer="madam", bits=8, gamma=8, update_bits=16,
                     epochs=2, batch_size=64, schedule="cosine", train_limit=6000, test_limit=1000)
try:
    data = load_dataset("fashion-mnist", train_limit=config.train_limit, test_limit=config.test_limit)
    config.dataset = "fashion-mnist"
except DatasetUnavailable as err:
    print(err)
    data = load_dataset("digits", train_limit=config.train_limit, test_limit=config.test_limit)
    config.dataset = "digits"

# LeNet: conv 6@5x5 (pad 2) - max pool - conv 16@5x5 - max pool - 120 - 84 - 10.
# Each conv is im2col feeding the same LNS matmul kernel as the linear layers.
for float32 in (False, True):
    config.float32 = float32
    history = Trainer(config, make_engine(config), data).run()
    label = "float32 Madam" if float32 else "LNS-Madam 8-bit"
    print(f"{label}: test accuracy {100 * history[-1].test_accuracy:.2f}% after {config.epochs} epochs")
