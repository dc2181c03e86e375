"""Random crop + flip: every output image is a zero-padded crop (maybe mirrored) of its input;
seeded, reproducible and independent of the thread count."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from errors import raises_arg
from resnet_cpp import _core
from resnet_cpp import functional as F

# Kernel tests run on each entry of this op's implementation list (conftest.impl_threads).
pytestmark = pytest.mark.impls("random_crop_flip")


def crops_of(img, p):
    """All (oy, ox, flipped) -> candidate outputs of one (C,H,W) image."""
    C, H, W = img.shape
    padded = np.pad(img, ((0, 0), (p, p), (p, p)))
    for oy in range(2 * p + 1):
        for ox in range(2 * p + 1):
            crop = padded[:, oy:oy + H, ox:ox + W]
            yield (oy, ox, False), crop
            yield (oy, ox, True), crop[:, :, ::-1]


def matching(out_img, in_img, p):
    return [k for k, c in crops_of(in_img, p) if np.array_equal(c, out_img)]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("shape,pad", [((6, 3, 7, 7), 2), ((5, 5, 9, 8), 4), ((1, 17, 5, 5), 1),
                                       ((4, 1, 3, 3), 5)], ids=str)
def test_output_is_a_padded_crop(impl_threads, rng, layout, shape, pad):
    # Distinct values per pixel, so a match identifies the crop (flip included).
    x = rng.permutation(np.prod(shape)).reshape(shape).astype(np.float32) + 1
    xin = x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    y = F.random_crop_flip(xin, padding=pad, seed=7, layout=layout)
    assert y.shape == xin.shape and y.dtype == np.float32
    yc = y if layout == "NCHW" else y.transpose(0, 3, 1, 2)
    for i in range(shape[0]):
        want = _core.crop_flip_params(7, i, pad, True)
        found = matching(yc[i], x[i], pad)
        assert found, f"image {i} is not a padded crop of its input"
        assert tuple(want) in found


def test_same_seed_same_output_any_threads(rng):
    x = rng.standard_normal((33, 3, 16, 16)).astype(np.float32)
    old = _core.num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            _core.set_num_threads(t)
            outs.append(F.random_crop_flip(x, seed=123))
    finally:
        _core.set_num_threads(old)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    assert not np.array_equal(F.random_crop_flip(x, seed=124), outs[0])
    # Layouts make the same choices.
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    yh = F.random_crop_flip(xh, seed=123, layout="NHWC")
    np.testing.assert_array_equal(yh.transpose(0, 3, 1, 2), outs[0])


def test_flip_frequency_and_offsets_uniform():
    n = 4000
    flips = sum(_core.crop_flip_params(99, i, 4, True)[2] for i in range(n))
    assert abs(flips / n - 0.5) < 0.04  # ~5 standard deviations
    offs = np.array([_core.crop_flip_params(99, i, 4, True)[:2] for i in range(n)])
    assert offs.min() == 0 and offs.max() == 8
    counts = np.bincount(offs[:, 0], minlength=9)
    assert counts.min() > n / 9 * 0.75
    # flip=False never flips; the observed output agrees for a batch.
    assert not any(_core.crop_flip_params(99, i, 4, False)[2] for i in range(200))


def test_flip_frequency_in_outputs(rng):
    x = np.arange(2 * 1 * 1 * 8, dtype=np.float32).reshape(2, 1, 1, 8)
    x = np.repeat(x[:1], 2000, axis=0)
    y = F.random_crop_flip(x, padding=0, seed=5)
    flipped = np.all(y[:, 0, 0] == x[0, 0, 0, ::-1], axis=1)
    same = np.all(y[:, 0, 0] == x[0, 0, 0], axis=1)
    assert np.all(flipped | same)
    assert 0.45 < flipped.mean() < 0.55


def test_identity_without_padding_or_flip(impl_threads, rng):
    x = rng.standard_normal((3, 5, 7, 9)).astype(np.float32)
    for layout in ("NCHW", "NHWC"):
        y = F.random_crop_flip(x, padding=0, flip=False, seed=1, layout=layout)
        np.testing.assert_array_equal(y, x)
        assert y is not x


def test_big_seeds_and_out(rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    out = np.empty_like(x)
    assert F.random_crop_flip(x, seed=-1, out=out) is out
    np.testing.assert_array_equal(out, F.random_crop_flip(x, seed=2**64 - 1))
    F.random_crop_flip(x, seed=2**200 + 5)


def test_cifar_batch_fast(rng):
    # CIFAR batch of 128 (NHWC, as the data loader calls it).
    x = rng.standard_normal((128, 32, 32, 3)).astype(np.float32)
    y = F.random_crop_flip(x, seed=0, layout="NHWC")
    assert y.shape == x.shape
    assert np.count_nonzero(y) > 0.7 * y.size


def test_thread_safety(rng):
    xs = [rng.standard_normal((16, 3, 32, 32)).astype(np.float32) for _ in range(4)]
    want = [F.random_crop_flip(x, seed=i) for i, x in enumerate(xs)]
    got = [None] * 4

    def work(i):
        for _ in range(20):
            got[i] = F.random_crop_flip(xs[i], seed=i)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


X = np.zeros((2, 3, 4, 4), np.float32)
RO = np.zeros((2, 3, 4, 4), np.float32)
RO.flags.writeable = False

BAD = [
    ((X.astype(np.float64), 4, True, 0, False), {}, TypeError, "x"),
    ((X[0], 4, True, 0, False), {}, ValueError, "x"),
    ((np.zeros((2, 3, 4, 8), np.float32)[..., ::2], 4, True, 0, False), {}, ValueError, "x"),
    ((np.zeros((0, 3, 4, 4), np.float32), 4, True, 0, False), {}, ValueError, "x"),
    ((X, -1, True, 0, False), {}, ValueError, "padding"),
    ((X, 4, True, 0, False), {"out": RO}, ValueError, "out"),
    ((X, 4, True, 0, False), {"out": np.zeros((2, 3, 4, 5), np.float32)}, ValueError, "out"),
    ((X, 4, True, 0, False), {"out": X}, ValueError, "out"),
]


@pytest.mark.parametrize("args,kw,exc,name", BAD, ids=lambda v: v if isinstance(v, str) else "")
def test_bad_inputs(args, kw, exc, name):
    with raises_arg(exc, name):
        _core.random_crop_flip(*args, **kw)


def test_functional_bad_inputs():
    with pytest.raises(ValueError, match=r"^layout\b"):
        F.random_crop_flip(X, seed=0, layout="CHW")
    with pytest.raises(TypeError, match=r"^seed\b"):
        F.random_crop_flip(X, seed=1.5)
    with pytest.raises(TypeError, match=r"^padding\b"):
        F.random_crop_flip(X, padding=2.0, seed=0)
    with pytest.raises(ValueError, match=r"^padding\b"):
        F.random_crop_flip(X, padding=-2, seed=0)
    with pytest.raises(TypeError):
        F.random_crop_flip(X)  # seed is required
