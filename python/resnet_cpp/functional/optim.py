"""In-place optimizer updates with PyTorch semantics (torch.optim.SGD, Adam, AdamW).

Kernels: cpp/optim.cpp and cpp/cuda/optim.cu, picked by the arrays' device. Every array is
float32 and C-contiguous, of any shape (all equal); param and the state buffers are updated
in place, so they must be writeable. lr (and Adam's step) may also be a one-element float32
(int64) array on the params' device, read when the step runs: a captured CUDA graph then
follows a learning-rate schedule.
"""
from __future__ import annotations

import numpy as np

from ..backend import is_array, kernels
from ._layout import check_int

__all__ = ["sgd_step", "adam_step"]


def _num(v, name: str) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(v).__name__}")
    return float(v)


def _num_or_array(v, name: str):
    return v if is_array(v) else _num(v, name)


def sgd_step(param: np.ndarray, grad: np.ndarray, momentum_buf: np.ndarray | None = None, *,
             lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
             nesterov: bool = False) -> None:
    """One SGD step, in place on param (and momentum_buf):

        g = grad + weight_decay * param
        buf = momentum * buf + g                      (momentum > 0; start buf at zeros)
        g = g + momentum * buf if nesterov else buf
        param -= lr * g

    momentum_buf is required when momentum > 0; nesterov needs momentum > 0.
    """
    K = kernels("sgd_step", param=param, grad=grad, momentum_buf=momentum_buf)
    K.sgd_step(param, grad, momentum_buf, _num_or_array(lr, "lr"), _num(momentum, "momentum"),
               _num(weight_decay, "weight_decay"), bool(nesterov))


def adam_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, *, step: int,
              lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
              weight_decay: float = 0.0, decoupled: bool = False) -> None:
    """One Adam (decoupled=False) or AdamW (decoupled=True) step, in place on param, m, v.

    Adam adds weight_decay * param to the gradient; AdamW instead scales param by
    1 - lr * weight_decay. Then m = beta1*m + (1-beta1)*g, v = beta2*v + (1-beta2)*g^2 and
    param -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps).
    step counts from 1 (the first update); m and v start at zeros.
    """
    if not is_array(step):
        step = check_int(step, "step")
    K = kernels("adam_step", param=param, grad=grad, m=m, v=v)
    K.adam_step(param, grad, m, v, step, _num_or_array(lr, "lr"), _num(beta1, "beta1"),
                _num(beta2, "beta2"), _num(eps, "eps"), _num(weight_decay, "weight_decay"),
                bool(decoupled))
