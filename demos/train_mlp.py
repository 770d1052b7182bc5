"""Train the 784-256-256-10 mlp with LNS-Madam at 8 bits, and the same model in float32 beside it.

Run:  python demos/train_mlp.py            (a few minutes; MNIST if you have it, else digits)

Read it top to bottom: it is the whole of what `lnsnet train` does, in the open.
"""
import time

import numpy as np

import lnsnet
from lnsnet import LNSFormat, nn, optim
from lnsnet.data import DatasetUnavailable, PixelEncoder, iterate_batches, load_dataset
from lnsnet.engines import Float32Engine
from lnsnet.ops import cross_entropy
from lnsnet.train import TrainConfig

# 1. Data: MNIST from the cache or Debian's package if it is there, else the synthetic digits.
try:
    data = load_dataset("mnist", train_limit=12000, test_limit=2000)
except DatasetUnavailable as err:
    print(err)
    data = load_dataset("digits", train_limit=12000, test_limit=2000)
print(data)

# 2. The model and its precision: weights, activations, errors and gradients in
#    8-bit LNS with gamma 8 (base 2**(1/8)); sums accumulated linearly.
forward = LNSFormat(bits=8, gamma=8)
model = nn.mlp(seed=0)
model.precision = lnsnet.precision(forward=forward, backward=forward, accumulate="linear")

# 3. Madam updates a 16-bit master copy of each weight's exponent by an integer.
optimizer = optim.Madam(model.parameters(), lr=0.01, master=LNSFormat(16, 1024))

# 4. Pixels enter LNS through a 256-entry table: no float touches a batch.
encode = PixelEncoder(forward)


def predict(images):
    with lnsnet.no_grad():
        sign, exp = encode(images[:, None])
        return model(lnsnet.Tensor(sign, exp, forward)).argmax(axis=-1)


for epoch in range(2):
    start = time.perf_counter()
    for images, labels in iterate_batches(data.train_images, data.train_labels, 64, seed=0, epoch=epoch):
        sign, exp = encode(images[:, None])
        loss = cross_entropy(model(lnsnet.Tensor(sign, exp, forward)), labels)
        loss.backward()          # every gradient is an LNS tensor, summed in LNS
        optimizer.step()         # x <- x - round(eta * gamma / ln2 * sign(w) * g*)
        optimizer.zero_grad()
    accuracy = np.mean(predict(data.test_images) == data.test_labels)
    print(f"LNS-Madam 8-bit, epoch {epoch + 1}: loss {loss.item():.3f}, "
          f"test accuracy {100 * accuracy:.2f}% ({time.perf_counter() - start:.1f} s)")

# 5. The float32 baseline: same architecture, same initial weights, same batches.
baseline = Float32Engine(TrainConfig(model="mlp", optimizer="madam", float32=True))
for epoch in range(2):
    for images, labels in iterate_batches(data.train_images, data.train_labels, 64, seed=0, epoch=epoch):
        baseline.train_batch(images, labels)
    accuracy = np.mean(baseline.predict(data.test_images) == data.test_labels)
    print(f"float32 Madam,   epoch {epoch + 1}: test accuracy {100 * accuracy:.2f}%")
