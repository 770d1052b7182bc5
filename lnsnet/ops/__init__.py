"""Differentiable ops on LNS tensors, one file per family, one class per op.

Each op class holds its forward and backward side by side; the functions
below are how code calls them.
"""
from lnsnet.ops.activation import leaky_relu, relu
from lnsnet.ops.cast import cast
from lnsnet.ops.conv import conv2d
from lnsnet.ops.elementwise import add, div, mul, neg, sub
from lnsnet.ops.loss import cross_entropy
from lnsnet.ops.matmul import linear, matmul
from lnsnet.ops.pool import avg_pool2d, max_pool2d
from lnsnet.ops.reduce import mean, sum
from lnsnet.ops.shape import flatten, reshape, transpose

__all__ = [
    "add", "sub", "mul", "div", "neg", "matmul", "linear", "sum", "mean", "reshape", "flatten",
    "transpose", "relu", "leaky_relu", "conv2d", "max_pool2d", "avg_pool2d", "cross_entropy", "cast",
]
