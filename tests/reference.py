"""NumPy float64 reference for every resnet_cpp op: the oracle of the parity tests.

Written for clarity, not speed, and importing nothing from resnet_cpp. Layout is NCHW,
conv weights are OIHW (K, C, R, S), as in PyTorch. test_reference.py checks every
backward here against central finite differences of its forward.
"""
from __future__ import annotations

import numpy as np


def _f64(*arrays):
    return [None if a is None else np.asarray(a, dtype=np.float64) for a in arrays]


# ---------------------------------------------------------------- convolution

def _out_size(n: int, k: int, stride: int, pad: int) -> int:
    return (n + 2 * pad - k) // stride + 1


def conv2d_forward(x, w, b, stride: int, pad: int):
    """y[n,k,p,q] = b[k] + sum_{c,r,s} xpad[n,c,p*stride+r,q*stride+s] * w[k,c,r,s]."""
    x, w, b = _f64(x, w, b)
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    P, Q = _out_size(H, R, stride, pad), _out_size(W, S, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    y = np.zeros((N, K, P, Q))
    for r in range(R):
        for s in range(S):
            # window of xpad seen by tap (r, s) at every output position: (N, C, P, Q)
            patch = xp[:, :, r:r + stride * P:stride, s:s + stride * Q:stride]
            y += np.einsum("ncpq,kc->nkpq", patch, w[:, :, r, s])
    if b is not None:
        y += b[None, :, None, None]
    return y


def conv2d_backward(dy, x, w, stride: int, pad: int):
    """Gradients of conv2d_forward: (dx, dw, db); db sums dy over n, p, q."""
    dy, x, w = _f64(dy, x, w)
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    _, _, P, Q = dy.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for r in range(R):
        for s in range(S):
            patch = xp[:, :, r:r + stride * P:stride, s:s + stride * Q:stride]
            dw[:, :, r, s] = np.einsum("nkpq,ncpq->kc", dy, patch)
            dxp[:, :, r:r + stride * P:stride, s:s + stride * Q:stride] += np.einsum(
                "nkpq,kc->ncpq", dy, w[:, :, r, s])
    dx = dxp[:, :, pad:pad + H, pad:pad + W]
    db = dy.sum(axis=(0, 2, 3))
    return dx, dw, db


# ---------------------------------------------------------------- bf16 rounding

def bf16_bits_scalar(u: int) -> int:
    """bf16 bits of the float32 with bits u: nearest, ties to even mantissa, by definition.

    As vcvtneps2bf16 (Intel SDM) does: zeros and denormals become signed zero, infinities
    stay, NaNs keep their top bits with the quiet bit set, and a finite value past the
    largest bf16 (plus half an ulp) rounds to infinity.
    """
    exp, mant = (u >> 23) & 0xFF, u & 0x7FFFFF
    if exp == 0:
        return (u >> 31) << 15
    if exp == 0xFF:
        return (u >> 16) | (0x40 if mant else 0)
    lo = u >> 16  # truncated toward zero
    mag = lambda bits: abs(float(np.array(bits, np.uint32).view(np.float32)))  # noqa: E731
    x, below = mag(u), mag(lo << 16)
    above = below + 2.0 ** (exp - 127 - 7)  # the next bf16 up, unbounded (float64 is exact)
    if x - below < above - x or (x - below == above - x and lo % 2 == 0):
        return lo
    return lo + 1  # a carry moves into the exponent; past the largest finite it is inf


def bf16_round(x):
    """float32 x rounded to bf16 as bf16_bits_scalar does (vectorized: add 0x7FFF plus the
    lowest kept bit, truncate), returned as float32; test_reference.py checks the two agree."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    exp, mant = (u >> 23) & 0xFF, u & 0x7FFFFF
    bits = np.where(exp == 0, (u >> 16) & 0x8000,
                    np.where((exp == 0xFF) & (mant != 0), (u >> 16) | 0x40,
                             (u + 0x7FFF + ((u >> 16) & 1)) >> 16))
    return (bits.astype(np.uint32) << 16).view(np.float32)


# ---------------------------------------------------------------- batch norm

def _bcast(v):
    return v[None, :, None, None]


def batch_norm_train_forward(x, gamma, beta, eps: float = 1e-5):
    """Normalize with the biased batch variance: y = gamma * (x - mean) * rstd + beta."""
    x, gamma, beta = _f64(x, gamma, beta)
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3))
    rstd = 1.0 / np.sqrt(var + eps)
    y = _bcast(gamma) * (x - _bcast(mean)) * _bcast(rstd) + _bcast(beta)
    return y, mean, rstd


def batch_norm_running_update(running_mean, running_var, x, momentum: float = 0.1):
    """PyTorch's update: the running variance uses the unbiased batch variance."""
    running_mean, running_var, x = _f64(running_mean, running_var, x)
    m = x.shape[0] * x.shape[2] * x.shape[3]
    mean = x.mean(axis=(0, 2, 3))
    var_unbiased = x.var(axis=(0, 2, 3)) * m / (m - 1)
    new_rm = (1 - momentum) * running_mean + momentum * mean
    new_rv = (1 - momentum) * running_var + momentum * var_unbiased
    return new_rm, new_rv


def batch_norm_eval_forward(x, gamma, beta, running_mean, running_var, eps: float = 1e-5):
    x, gamma, beta, rm, rv = _f64(x, gamma, beta, running_mean, running_var)
    return _bcast(gamma) * (x - _bcast(rm)) / np.sqrt(_bcast(rv) + eps) + _bcast(beta)


def batch_norm_backward(dy, x, gamma, mean, rstd):
    """Training-mode backward from the cached batch mean and rstd.

    With xhat = (x - mean) * rstd over m = N*H*W values per channel:
    dx = gamma * rstd * (dy - mean(dy) - xhat * mean(dy * xhat)).
    """
    dy, x, gamma, mean, rstd = _f64(dy, x, gamma, mean, rstd)
    xhat = (x - _bcast(mean)) * _bcast(rstd)
    dbeta = dy.sum(axis=(0, 2, 3))
    dgamma = (dy * xhat).sum(axis=(0, 2, 3))
    m = x.shape[0] * x.shape[2] * x.shape[3]
    dx = _bcast(gamma * rstd) * (dy - _bcast(dbeta / m) - xhat * _bcast(dgamma / m))
    return dx, dgamma, dbeta


def batch_norm_eval_backward(dy, x, gamma, running_mean, running_var, eps: float = 1e-5):
    """Eval-mode backward: the statistics are constants, so BN is a per-channel affine map."""
    dy, x, gamma, rm, rv = _f64(dy, x, gamma, running_mean, running_var)
    rstd = 1.0 / np.sqrt(rv + eps)
    xhat = (x - _bcast(rm)) * _bcast(rstd)
    return dy * _bcast(gamma * rstd), (dy * xhat).sum(axis=(0, 2, 3)), dy.sum(axis=(0, 2, 3))


def batch_norm_join(x, residual, gamma, beta, running_mean, running_var, relu: bool,
                    training: bool, eps: float = 1e-5):
    """A ResNet block's join, y = relu?(bn(x) + residual), and its backward.

    Returns (y, backward) with backward(dy, y_mask) -> (dx, dgamma, dbeta, dresidual); the
    ReLU mask is taken from y_mask > 0 (the implementation's own output, so a value within
    rounding of 0 cannot flip it).
    """
    if training:
        z, mean, rstd = batch_norm_train_forward(x, gamma, beta, eps)
    else:
        z = batch_norm_eval_forward(x, gamma, beta, running_mean, running_var, eps)
    y = add_relu_forward(z, residual) if relu else z + residual

    def backward(dy, y_mask):
        d = add_relu_backward(dy, y_mask) if relu else _f64(dy)[0]
        if training:
            return (*batch_norm_backward(d, x, gamma, mean, rstd), d)
        return (*batch_norm_eval_backward(d, x, gamma, running_mean, running_var, eps), d)
    return y, backward


# ---------------------------------------------------------------- elementwise

def relu_forward(x):
    (x,) = _f64(x)
    return np.maximum(x, 0.0)


def relu_backward(dy, y):
    """The mask comes from the output: y > 0 exactly where x > 0."""
    dy, y = _f64(dy, y)
    return dy * (y > 0)


def add_relu_forward(a, b):
    a, b = _f64(a, b)
    return np.maximum(a + b, 0.0)


def add_relu_backward(dy, y):
    """Gradient reaching both summands of relu(a + b)."""
    return relu_backward(dy, y)


def shortcut_a_forward(x, channels_out: int, stride: int):
    """Option-A shortcut: subsample by stride, zero-pad channels, (K-C)//2 of them below."""
    (x,) = _f64(x)
    n, c = x.shape[:2]
    sub = x[:, :, ::stride, ::stride]
    y = np.zeros((n, channels_out) + sub.shape[2:])
    lo = (channels_out - c) // 2
    y[:, lo:lo + c] = sub
    return y


def shortcut_a_backward(dy, x_shape, stride: int):
    (dy,) = _f64(dy)
    c = x_shape[1]
    lo = (dy.shape[1] - c) // 2
    dx = np.zeros(x_shape)
    dx[:, :, ::stride, ::stride] = dy[:, lo:lo + c]
    return dx


# ---------------------------------------------------------------- pooling

def max_pool2d_forward(x, k: int, stride: int, pad: int):
    return _max_pool2d(x, k, stride, pad)[0]


def max_pool2d_backward(dy, x, k: int, stride: int, pad: int):
    dy = np.asarray(dy, dtype=np.float64)
    _, (N, C, H, W), arg = _max_pool2d(x, k, stride, pad)
    dxp = np.zeros((N, C, H + 2 * pad, W + 2 * pad))
    for n in range(N):
        for c in range(C):
            for p in range(dy.shape[2]):
                for q in range(dy.shape[3]):
                    i, j = arg[n, c, p, q]
                    dxp[n, c, i, j] += dy[n, c, p, q]
    return dxp[:, :, pad:pad + H, pad:pad + W]


def max_pool2d_argmax(x, k: int, stride: int, pad: int):
    """(N, C, P, Q) int64: flat index h*W + w in the unpadded input of each window's first
    maximum, the index the kernels save for the backward pass."""
    _, (N, C, H, W), arg = _max_pool2d(x, k, stride, pad)
    return (arg[..., 0] - pad) * W + (arg[..., 1] - pad)


def _max_pool2d(x, k, stride, pad):
    """Max over each window of the -inf-padded input; ties go to the first maximum in
    row-major window order (as PyTorch). Returns y, x's shape and the argmax positions."""
    (x,) = _f64(x)
    N, C, H, W = x.shape
    P, Q = _out_size(H, k, stride, pad), _out_size(W, k, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    y = np.empty((N, C, P, Q))
    arg = np.empty((N, C, P, Q, 2), dtype=np.int64)
    for p in range(P):
        for q in range(Q):
            win = xp[:, :, p * stride:p * stride + k, q * stride:q * stride + k].reshape(N, C, k * k)
            first = win.argmax(axis=2)  # argmax returns the first maximum
            y[:, :, p, q] = np.take_along_axis(win, first[..., None], axis=2)[..., 0]
            arg[:, :, p, q, 0] = p * stride + first // k
            arg[:, :, p, q, 1] = q * stride + first % k
    return y, (N, C, H, W), arg


def global_avg_pool_forward(x):
    (x,) = _f64(x)
    return x.mean(axis=(2, 3))


def global_avg_pool_backward(dy, x_shape):
    (dy,) = _f64(dy)
    N, C, H, W = x_shape
    return np.broadcast_to(dy[:, :, None, None] / (H * W), (N, C, H, W)).copy()


# ---------------------------------------------------------------- linear

def linear_forward(x, w, b):
    """y = x W^T + b with x (N, F), w (O, F)."""
    x, w, b = _f64(x, w, b)
    y = x @ w.T
    return y if b is None else y + b


def linear_backward(dy, x, w):
    dy, x, w = _f64(dy, x, w)
    return dy @ w, dy.T @ x, dy.sum(axis=0)


# ---------------------------------------------------------------- loss

def _log_softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _smoothed_targets(labels, num_classes, label_smoothing):
    t = np.full((len(labels), num_classes), label_smoothing / num_classes)
    t[np.arange(len(labels)), labels] += 1.0 - label_smoothing
    return t


def cross_entropy_forward(logits, labels, label_smoothing: float = 0.0):
    """Mean over the batch of -sum_j t_j log softmax(logits)_j, with t the (smoothed) one-hot."""
    (logits,) = _f64(logits)
    t = _smoothed_targets(np.asarray(labels), logits.shape[1], label_smoothing)
    return float(-(t * _log_softmax(logits)).sum(axis=1).mean())


def cross_entropy_backward(logits, labels, label_smoothing: float = 0.0):
    (logits,) = _f64(logits)
    t = _smoothed_targets(np.asarray(labels), logits.shape[1], label_smoothing)
    return (np.exp(_log_softmax(logits)) - t) / logits.shape[0]


# ---------------------------------------------------------------- optimizers

def sgd_step(p, g, buf, lr, momentum, weight_decay, nesterov):
    """One PyTorch SGD step (dampening 0); returns the new parameter and momentum buffer."""
    p, g, buf = _f64(p, g, buf)
    g = g + weight_decay * p
    if momentum:
        buf = momentum * buf + g
        g = g + momentum * buf if nesterov else buf
    return p - lr * g, buf


def adam_step(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """One Adam (decoupled=False: L2 added to g) or AdamW (decoupled=True) step, bias-corrected."""
    p, g, m, v = _f64(p, g, m, v)
    if decoupled:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** step)
    v_hat = v / (1 - beta2 ** step)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), m, v
