"""Float64 NCHW ResNets composed from tests/reference.py ops: the oracle of the model tests.

``RefNet`` holds a state_dict and gives each op (conv, bn, relu, maxpool, head) as a
function returning its output and a closure dy -> dx that adds parameter gradients into
``net.grads``; ``ref_cifar_v1``, ``ref_imagenet`` and ``ref_preact_v2`` compose them into the
zoo's architectures, written independently of the model code.

Branch decisions: a float32 model may take the other side of a ReLU (or max-pool window)
whose input is within rounding of the kink; ``RefNet(..., decisions=d)`` replays the masks
and argmaxes a float32 run recorded (keyed by the BN / pool module name), so gradients are
compared given the same branches (see tests/model_precision.py).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

import reference as R



class RefNet:
    """A float64 NCHW ResNet built from tests/reference.py ops and a state_dict.

    Each op returns its output and a closure mapping dy -> dx that adds parameter
    gradients into ``self.grads``; blocks compose the closures by hand (the residual
    sum is explicit). ``train``: batch statistics (and the expected running statistics in
    ``self.running``) or the running ones. ``decisions``: ReLU masks / max-pool argmaxes
    to replay instead of deciding (NCHW, keyed by module name).
    """

    def __init__(self, state_dict, train: bool = True, decisions: dict | None = None):
        self.p = {k: np.asarray(v, np.float64) for k, v in state_dict.items()}
        self.train, self.decisions = train, decisions
        self.grads = defaultdict(float)
        self.running = {}
        self.kink = np.inf  # smallest |ReLU input| seen: float32 may land on either side
        self.decided = {}  # the masks and argmaxes this run used, keyed like ``decisions``

    def relu(self, z, key):
        """relu(z) with the mask decided here or replayed; returns (y, mask)."""
        self.kink = min(self.kink, float(np.min(np.abs(z))))
        mask = z > 0 if self.decisions is None else self.decisions[key]
        self.decided[key] = mask
        return z * mask, mask

    def conv(self, x, name, stride, pad):
        w, b = self.p[name + ".weight"], self.p.get(name + ".bias")
        y = R.conv2d_forward(x, w, b, stride, pad)

        def back(dy):
            dx, dw, db = R.conv2d_backward(dy, x, w, stride, pad)
            self.grads[name + ".weight"] += dw
            if b is not None:
                self.grads[name + ".bias"] += db
            return dx
        return y, back

    def bn(self, x, name, relu):
        g, b = self.p[name + ".weight"], self.p[name + ".bias"]
        rm, rv = self.p[name + ".running_mean"], self.p[name + ".running_var"]
        if self.train:
            z, mean, rstd = R.batch_norm_train_forward(x, g, b)
            self.running[name] = R.batch_norm_running_update(rm, rv, x)
        else:
            z = R.batch_norm_eval_forward(x, g, b, rm, rv)
        y, mask = self.relu(z, name) if relu else (z, None)

        def back(dy):
            dz = dy * mask if relu else dy
            if self.train:
                dx, dg, db = R.batch_norm_backward(dz, x, g, mean, rstd)
            else:
                dx, dg, db = R.batch_norm_eval_backward(dz, x, g, rm, rv)
            self.grads[name + ".weight"] += dg
            self.grads[name + ".bias"] += db
            return dx
        return y, back

    def maxpool(self, x, name, k, stride, pad):
        """Max pooling; the argmax (flat h*W + w per plane) is decided here or replayed."""
        N, C, H, W = x.shape
        arg = R.max_pool2d_argmax(x, k, stride, pad) if self.decisions is None \
            else self.decisions[name]
        self.decided[name] = arg
        y = np.take_along_axis(x.reshape(N, C, H * W), arg.reshape(N, C, -1), axis=2)

        def back(dy):
            dx = np.zeros((N, C, H * W))
            np.add.at(dx, (np.arange(N)[:, None, None], np.arange(C)[None, :, None],
                           arg.reshape(N, C, -1)), dy.reshape(N, C, -1))
            return dx.reshape(x.shape)
        return y.reshape(arg.shape), back

    def head(self, x, name="fc"):
        """Global average pool + linear."""
        pooled = R.global_avg_pool_forward(x)
        w, b = self.p[name + ".weight"], self.p[name + ".bias"]
        y = R.linear_forward(pooled, w, b)

        def back(dy):
            dp, dw, db = R.linear_backward(dy, pooled, w)
            self.grads[name + ".weight"] += dw
            self.grads[name + ".bias"] += db
            return R.global_avg_pool_backward(dp, x.shape)
        return y, back


def chain(x, *ops):
    """Apply ops (each x -> (y, back)) in order; return y and the composed backward."""
    backs = []
    for op in ops:
        x, back = op(x)
        backs.append(back)
    return x, reverse_all(backs)


def reverse_all(backs):
    """The backward of a sequence of ops: their backward closures in reverse order."""
    def back_all(dy):
        for back in reversed(backs):
            dy = back(dy)
        return dy
    return back_all


def ref_v1_block(net, h, pre, stride, shortcut, bottleneck):
    """A v1 residual block (basic or bottleneck, stride on the 3x3): relu(main + short)."""
    if bottleneck:
        main, back_main = chain(h, lambda t: net.conv(t, pre + ".conv1", 1, 0),
                                lambda t: net.bn(t, pre + ".bn1", True),
                                lambda t: net.conv(t, pre + ".conv2", stride, 1),
                                lambda t: net.bn(t, pre + ".bn2", True),
                                lambda t: net.conv(t, pre + ".conv3", 1, 0),
                                lambda t: net.bn(t, pre + ".bn3", False))
    else:
        main, back_main = chain(h, lambda t: net.conv(t, pre + ".conv1", stride, 1),
                                lambda t: net.bn(t, pre + ".bn1", True),
                                lambda t: net.conv(t, pre + ".conv2", 1, 1),
                                lambda t: net.bn(t, pre + ".bn2", False))
    cin, cout = h.shape[1], main.shape[1]
    if stride == 1 and cin == cout:
        short, back_short = h, (lambda d: d)
    elif shortcut == "A":  # subsample, zero-pad channels on both sides
        lo = (cout - cin) // 2
        short = np.zeros_like(main)
        short[:, lo:lo + cin] = h[:, :, ::stride, ::stride]

        def back_short(d):
            dx = np.zeros(h.shape)
            dx[:, :, ::stride, ::stride] = d[:, lo:lo + cin]
            return dx
    else:
        short, back_short = chain(h, lambda t: net.conv(t, pre + ".downsample.0", stride, 0),
                                  lambda t: net.bn(t, pre + ".downsample.1", False))
    y, mask = net.relu(main + short, pre + (".bn3" if bottleneck else ".bn2"))

    def back(dy):
        d = dy * mask
        return back_main(d) + back_short(d)
    return y, back


def ref_cifar_v1(net, x, n, shortcut):
    """He et al. 2015 CIFAR ResNet: conv-BN-ReLU, 3 stages of n basic blocks, pool, fc."""
    ops = [lambda t: net.conv(t, "conv1", 1, 1), lambda t: net.bn(t, "bn1", True)]
    for s in range(3):
        for i in range(n):
            ops.append(lambda t, pre=f"layer{s + 1}.{i}", st=2 if (s > 0 and i == 0) else 1:
                       ref_v1_block(net, t, pre, st, shortcut, False))
    ops.append(net.head)
    return chain(x, *ops)


def ref_imagenet(net, x, counts, bottleneck):
    """torchvision ResNet: conv 7x7/2-BN-ReLU, maxpool 3x3/2 pad 1, 4 stages, pool, fc."""
    ops = [lambda t: net.conv(t, "conv1", 2, 3), lambda t: net.bn(t, "bn1", True),
           lambda t: net.maxpool(t, "maxpool", 3, 2, 1)]
    for s, count in enumerate(counts):
        for i in range(count):
            ops.append(lambda t, pre=f"layer{s + 1}.{i}", st=2 if (s > 0 and i == 0) else 1:
                       ref_v1_block(net, t, pre, st, "B", bottleneck))
    ops.append(net.head)
    return chain(x, *ops)


def ref_preact_v2(net, x, n, width):
    """He et al. 2016 pre-activation bottleneck ResNet, both presets (see models/preact.py)."""
    keras = width == "keras"
    h, back_stem = net.conv(x, "conv1", 1, 1)
    backs = [back_stem]
    if keras:  # Keras' stem is conv-BN-ReLU
        h, back_bn = net.bn(h, "bn1", True)
        backs.append(back_bn)
    for s in range(3):
        for i in range(n):
            pre = f"layer{s + 1}.{i}"
            stride = 2 if (s > 0 and i == 0) else 1
            s1, s2 = (stride, 1) if keras else (1, stride)
            if i > 0:
                preact = "residual"
            elif keras:
                preact = "none" if s == 0 else "residual"
            else:
                preact = "both"
            a, back_a = (h, lambda d: d) if preact == "none" else net.bn(h, pre + ".bn1", True)
            res, back_res = chain(a, lambda t: net.conv(t, pre + ".conv1", s1, 0),
                                  lambda t: net.bn(t, pre + ".bn2", True),
                                  lambda t: net.conv(t, pre + ".conv2", s2, 1),
                                  lambda t: net.bn(t, pre + ".bn3", True),
                                  lambda t: net.conv(t, pre + ".conv3", 1, 0))
            src = a if preact == "both" else h
            if i == 0:
                short, back_short = net.conv(src, pre + ".downsample", stride, 0)
            else:
                short, back_short = src, (lambda d: d)
            h = res + short

            def back_unit(dy, ba=back_a, br=back_res, bs=back_short, preact=preact):
                if preact == "both":  # both branches read a = bn1(x)
                    return ba(br(dy) + bs(dy))
                return ba(br(dy)) + bs(dy)
            backs.append(back_unit)
    h, back_final = net.bn(h, "bn_final", True)
    backs.append(back_final)
    logits, back_head = net.head(h)
    backs.append(back_head)
    return logits, reverse_all(backs)


