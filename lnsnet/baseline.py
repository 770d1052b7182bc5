"""The float32 baseline: the same architecture, initial weights and batches in plain NumPy float32.

This is reference code for the comparison the README's table makes (it is
never on the LNS training path, so the integer-only rule does not apply).
Layers mirror lnsnet.nn: each takes its initial weights decoded from the LNS
model, so both runs start from the same point.
"""
from __future__ import annotations

import numpy as np

F32 = np.float32


class Layer:
    params: tuple[str, ...] = ()

    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError


class Linear(Layer):
    params = ("weight", "bias")

    def __init__(self, weight, bias):
        self.weight = weight.astype(F32)   # (out, in)
        self.bias = None if bias is None else bias.astype(F32)
        self.grads = {}

    def forward(self, x):
        self.x = x
        y = x @ self.weight.T
        return y if self.bias is None else y + self.bias

    def backward(self, grad):
        self.grads["weight"] = grad.T @ self.x
        if self.bias is not None:
            self.grads["bias"] = grad.sum(axis=0)
        return grad @ self.weight


def _im2col(x, kh, kw, stride, padding):
    """(B, C, H, W) -> (B, OH, OW, C*kh*kw) patches, as a strided view of the padded input."""
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    b, c, h, w = x.shape
    oh = (h - kh) // stride + 1
    ow = (w - kw) // stride + 1
    sb, sc, sh, sw = x.strides
    view = np.lib.stride_tricks.as_strided(
        x, (b, oh, ow, c, kh, kw), (sb, sh * stride, sw * stride, sc, sh, sw), writeable=False)
    return view.reshape(b, oh, ow, c * kh * kw), x.shape


class Conv2d(Layer):
    params = ("weight", "bias")

    def __init__(self, weight, bias, stride=1, padding=0):
        self.weight = weight.astype(F32)   # (out, in, kh, kw)
        self.bias = None if bias is None else bias.astype(F32)
        self.stride, self.padding = stride, padding
        self.grads = {}

    def forward(self, x):
        out_c, _, kh, kw = self.weight.shape
        cols, self.padded_shape = _im2col(x, kh, kw, self.stride, self.padding)
        self.cols = cols
        y = cols @ self.weight.reshape(out_c, -1).T          # (B, OH, OW, out)
        if self.bias is not None:
            y = y + self.bias
        return y.transpose(0, 3, 1, 2)

    def backward(self, grad):
        out_c, in_c, kh, kw = self.weight.shape
        g = grad.transpose(0, 2, 3, 1)                       # (B, OH, OW, out)
        self.grads["weight"] = np.tensordot(g, self.cols, axes=([0, 1, 2], [0, 1, 2])).reshape(
            self.weight.shape)
        if self.bias is not None:
            self.grads["bias"] = g.sum(axis=(0, 1, 2))
        dcols = (g @ self.weight.reshape(out_c, -1)).reshape(g.shape[:3] + (in_c, kh, kw))
        dx = np.zeros(self.padded_shape, dtype=F32)
        b, oh, ow = g.shape[:3]
        s = self.stride
        for i in range(kh):
            for j in range(kw):
                dx[:, :, i:i + s * oh:s, j:j + s * ow:s] += dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
        p = self.padding
        return dx[:, :, p:dx.shape[2] - p, p:dx.shape[3] - p] if p else dx


class ReLU(Layer):
    def __init__(self, slope=0.0):
        self.slope = F32(slope)

    def forward(self, x):
        self.positive = x > 0
        return np.where(self.positive, x, x * self.slope)

    def backward(self, grad):
        return np.where(self.positive, grad, grad * self.slope)


class Pool2d(Layer):
    """Max or average pooling over non-overlapping size x size windows."""

    def __init__(self, size, kind):
        self.size, self.kind = size, kind

    def forward(self, x):
        b, c, h, w = x.shape
        k = self.size
        self.in_shape = x.shape
        win = x[:, :, :h - h % k, :w - w % k].reshape(b, c, h // k, k, w // k, k)
        if self.kind == "avg":
            return win.mean(axis=(3, 5), dtype=F32)
        out = win.max(axis=(3, 5))
        self.mask = win == out[:, :, :, None, :, None]
        # Ties send the gradient to the first maximum only, as the LNS op does.
        first = np.cumsum(self.mask.reshape(b, c, h // k, k, w // k, k).transpose(0, 1, 2, 4, 3, 5)
                          .reshape(b, c, h // k, w // k, k * k), axis=-1) == 1
        self.mask &= first.reshape(b, c, h // k, w // k, k, k).transpose(0, 1, 2, 4, 3, 5)
        return out

    def backward(self, grad):
        b, c, h, w = self.in_shape
        k = self.size
        g = grad[:, :, :, None, :, None]
        if self.kind == "avg":
            win = np.broadcast_to(g / F32(k * k), (b, c, h // k, k, w // k, k))
        else:
            win = np.where(self.mask, g, F32(0))
        dx = np.zeros(self.in_shape, dtype=F32)
        dx[:, :, :h - h % k, :w - w % k] = win.reshape(b, c, h - h % k, w - w % k)
        return dx


class Flatten(Layer):
    def forward(self, x):
        self.in_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad):
        return grad.reshape(self.in_shape)


def softmax_cross_entropy(logits, labels):
    """Mean loss over the batch and its gradient with respect to the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = len(labels)
    loss = -log_p[np.arange(n), labels].mean()
    grad = np.exp(log_p)
    grad[np.arange(n), labels] -= 1
    return float(loss), (grad / F32(n)).astype(F32)


class Float32Net:
    """A sequence of float32 layers with forward, backward and named parameters."""

    def __init__(self, layers: list[tuple[str, Layer]]):
        self.layers = layers

    def __call__(self, x):
        x = x.astype(F32)
        for _, layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad):
        for _, layer in reversed(self.layers):
            grad = layer.backward(grad)

    def named_parameters(self):
        for prefix, layer in self.layers:
            for name in layer.params:
                if getattr(layer, name) is not None:
                    yield f"{prefix}.{name}", layer, name
