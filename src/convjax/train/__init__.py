"""``convjax.train``: optax training loops that compile once, run many seeds at once,
resume after a crash and scale over devices.

* :func:`fit` -- one run: steps under ``lax.scan`` in blocks of ``eval_every``,
  evaluation after each block, checkpoints, progress bar.
* :func:`fit_many` -- the same, vmapped over runs (seeds, hyperparameters).
* losses and metrics: :func:`softmax_cross_entropy`, :func:`logistic_loss`,
  :func:`mse`, :func:`accuracy`, :func:`binary_accuracy`; :func:`mean_std` over seeds.
* optimizers: :func:`beta_lasso` (L1 step plus hard threshold, Neyshabur 2020).
* checkpoints (npz + JSON, no pickle): :func:`save_checkpoint`,
  :func:`load_checkpoint`, :func:`latest_checkpoint`, :class:`CheckpointError`.
"""

from convjax.train.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from convjax.train.devices import make_mesh
from convjax.train.loop import FitResult, NonFiniteError, TrainState, fit, fit_many, jsonable
from convjax.train.losses import (
    accuracy,
    binary_accuracy,
    logistic_loss,
    mean_std,
    mse,
    softmax_cross_entropy,
)
from convjax.train.optimizers import BetaLassoState, beta_lasso

__all__ = [
    "BetaLassoState",
    "CheckpointError",
    "FitResult",
    "NonFiniteError",
    "TrainState",
    "accuracy",
    "beta_lasso",
    "binary_accuracy",
    "fit",
    "fit_many",
    "jsonable",
    "latest_checkpoint",
    "load_checkpoint",
    "logistic_loss",
    "make_mesh",
    "mean_std",
    "mse",
    "save_checkpoint",
    "softmax_cross_entropy",
]
