"""Optimizers that update LNS master weights in integers: LNS-Madam, SGD and Adam.

Float64 versions of the same three live in lnsnet.optim.reference; learning-rate
schedules in lnsnet.optim.schedule.
"""
from lnsnet.optim.adam import Adam
from lnsnet.optim.base import DEFAULT_STATE_FORMAT, Optimizer
from lnsnet.optim.madam import Madam
from lnsnet.optim.schedule import CosineLR, Schedule, StepLR
from lnsnet.optim.sgd import SGD

__all__ = ["Adam", "CosineLR", "DEFAULT_STATE_FORMAT", "Madam", "Optimizer", "SGD", "Schedule", "StepLR"]
