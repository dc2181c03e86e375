"""Central finite differences in float64, used to check the reference's backward passes."""
from __future__ import annotations

import numpy as np


def numerical_grad(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """d f / d x by central differences; f takes no arguments and reads x, which is perturbed
    in place (and restored) one element at a time."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        fp = f()
        x[i] = old - h
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


def assert_grad(analytic, f, x, name: str, rtol: float = 1e-6, atol: float = 1e-8) -> None:
    num = numerical_grad(f, x)
    np.testing.assert_allclose(analytic, num, rtol=rtol, atol=atol, err_msg=name)
