"""The oracle itself: every backward in reference.py against central finite differences of
its forward (float64, h=1e-6, rtol 1e-6), on tiny shapes."""
import numpy as np
import pytest
import reference as ref
from gradcheck import assert_grad


def rand(rng, *shape):
    return rng.standard_normal(shape)


@pytest.mark.parametrize("stride,pad,k", [(1, 1, 3), (2, 1, 3), (1, 0, 1), (2, 0, 1), (2, 3, 7)])
def test_conv2d(rng, stride, pad, k):
    x, w, b = rand(rng, 2, 3, 7, 7), rand(rng, 4, 3, k, k), rand(rng, 4)
    G = rand(rng, *ref.conv2d_forward(x, w, b, stride, pad).shape)
    f = lambda: (ref.conv2d_forward(x, w, b, stride, pad) * G).sum()  # noqa: E731
    dx, dw, db = ref.conv2d_backward(G, x, w, stride, pad)
    assert_grad(dx, f, x, "dx")
    assert_grad(dw, f, w, "dw")
    assert_grad(db, f, b, "db")


def test_conv2d_matches_direct_sum(rng):
    # An independent spelling of the definition, on one output element.
    x, w = rand(rng, 1, 2, 5, 5), rand(rng, 3, 2, 3, 3)
    y = ref.conv2d_forward(x, w, None, 2, 1)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    assert y.shape == (1, 3, 3, 3)
    assert np.isclose(y[0, 2, 1, 2], (xp[0, :, 2:5, 4:7] * w[2]).sum())


def test_batch_norm_train(rng):
    x, gamma, beta = rand(rng, 3, 2, 3, 3), rand(rng, 2), rand(rng, 2)
    G = rand(rng, *x.shape)
    f = lambda: (ref.batch_norm_train_forward(x, gamma, beta)[0] * G).sum()  # noqa: E731
    _, mean, rstd = ref.batch_norm_train_forward(x, gamma, beta)
    dx, dgamma, dbeta = ref.batch_norm_backward(G, x, gamma, mean, rstd)
    assert_grad(dx, f, x, "dx", rtol=1e-5)
    assert_grad(dgamma, f, gamma, "dgamma")
    assert_grad(dbeta, f, beta, "dbeta")


def test_batch_norm_eval(rng):
    x, gamma, beta = rand(rng, 2, 3, 2, 2), rand(rng, 3), rand(rng, 3)
    rm, rv = rand(rng, 3), rng.uniform(0.5, 2, 3)
    G = rand(rng, *x.shape)
    f = lambda: (ref.batch_norm_eval_forward(x, gamma, beta, rm, rv) * G).sum()  # noqa: E731
    dx, dgamma, dbeta = ref.batch_norm_eval_backward(G, x, gamma, rm, rv)
    assert_grad(dx, f, x, "dx")
    assert_grad(dgamma, f, gamma, "dgamma")
    assert_grad(dbeta, f, beta, "dbeta")


def test_batch_norm_running_update(rng):
    x = rand(rng, 4, 2, 3, 3)
    rm, rv = ref.batch_norm_running_update(np.zeros(2), np.ones(2), x, momentum=0.1)
    flat = x.transpose(1, 0, 2, 3).reshape(2, -1)
    np.testing.assert_allclose(rm, 0.1 * flat.mean(axis=1))
    np.testing.assert_allclose(rv, 0.9 + 0.1 * flat.var(axis=1, ddof=1))


def away_from_zero(rng, *shape):
    """Values with |v| >= 0.1 so a finite-difference step never crosses a ReLU kink."""
    v = rng.uniform(0.1, 2.0, shape)
    return v * rng.choice([-1.0, 1.0], shape)


def test_relu_and_add_relu(rng):
    x = away_from_zero(rng, 2, 3, 4)
    G = rand(rng, *x.shape)
    assert_grad(ref.relu_backward(G, ref.relu_forward(x)), lambda: (ref.relu_forward(x) * G).sum(), x, "relu")
    a = away_from_zero(rng, 2, 3, 4)
    b = np.zeros_like(a)  # a + b stays away from the kink; b gets the same gradient as a
    f = lambda: (ref.add_relu_forward(a, b) * G).sum()  # noqa: E731
    d = ref.add_relu_backward(G, ref.add_relu_forward(a, b))
    assert_grad(d, f, a, "add_relu da")
    assert_grad(d, f, b, "add_relu db")


@pytest.mark.parametrize("k,stride,pad", [(3, 2, 1), (2, 2, 0), (3, 1, 1)])
def test_max_pool(rng, k, stride, pad):
    x = rng.permutation(2 * 2 * 7 * 7).reshape(2, 2, 7, 7) * 0.01  # distinct: no ties
    G = rand(rng, *ref.max_pool2d_forward(x, k, stride, pad).shape)
    f = lambda: (ref.max_pool2d_forward(x, k, stride, pad) * G).sum()  # noqa: E731
    assert_grad(ref.max_pool2d_backward(G, x, k, stride, pad), f, x, "dx")


def test_max_pool_ties_go_to_first():
    x = np.ones((1, 1, 2, 2))
    dx = ref.max_pool2d_backward(np.ones((1, 1, 1, 1)), x, 2, 2, 0)
    assert dx[0, 0].tolist() == [[1, 0], [0, 0]]
    # Indices are into the unpadded plane: with pad 1 the first window's maximum is (0, 0).
    x = np.arange(9.0).reshape(1, 1, 3, 3)[:, :, ::-1, ::-1].copy()  # 8 at (0, 0)
    assert ref.max_pool2d_argmax(x, 3, 2, 1)[0, 0].tolist() == [[0, 1], [3, 4]]


def test_global_avg_pool(rng):
    x = rand(rng, 2, 3, 4, 5)
    G = rand(rng, 2, 3)
    f = lambda: (ref.global_avg_pool_forward(x) * G).sum()  # noqa: E731
    assert_grad(ref.global_avg_pool_backward(G, x.shape), f, x, "dx")


def test_linear(rng):
    x, w, b = rand(rng, 3, 5), rand(rng, 4, 5), rand(rng, 4)
    G = rand(rng, 3, 4)
    f = lambda: (ref.linear_forward(x, w, b) * G).sum()  # noqa: E731
    dx, dw, db = ref.linear_backward(G, x, w)
    assert_grad(dx, f, x, "dx")
    assert_grad(dw, f, w, "dw")
    assert_grad(db, f, b, "db")


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy(rng, smoothing):
    logits, labels = rand(rng, 4, 6), np.array([0, 5, 2, 2])
    f = lambda: ref.cross_entropy_forward(logits, labels, smoothing)  # noqa: E731
    assert_grad(ref.cross_entropy_backward(logits, labels, smoothing), f, logits, "dlogits")


def test_cross_entropy_is_stable_and_exact():
    # log(1 + e^-1e4) == 0 to float64 precision; a naive softmax would overflow.
    assert ref.cross_entropy_forward(np.array([[1e4, 0.0]]), np.array([0])) == 0.0
    uniform = ref.cross_entropy_forward(np.zeros((2, 10)), np.array([3, 7]))
    assert np.isclose(uniform, np.log(10))


def test_sgd_closed_form():
    # Constant gradient g, momentum m: buf1 = g, p1 = p0 - lr g; buf2 = (1+m) g.
    p, g, lr, m = np.array([1.0]), np.array([0.5]), 0.1, 0.9
    p1, buf = ref.sgd_step(p, g, np.zeros(1), lr, m, 0.0, False)
    p2, buf = ref.sgd_step(p1, g, buf, lr, m, 0.0, False)
    assert np.allclose([p1[0], p2[0], buf[0]], [0.95, 0.95 - 0.1 * 1.9 * 0.5, 0.95])
    # Nesterov's first step uses g + m * buf1 = (1 + m) g; weight decay adds wd * p.
    pn, _ = ref.sgd_step(p, g, np.zeros(1), lr, m, 0.0, True)
    assert np.isclose(pn[0], 1.0 - 0.1 * 1.9 * 0.5)
    pw, _ = ref.sgd_step(p, g, np.zeros(1), lr, 0.0, 0.5, False)
    assert np.isclose(pw[0], 1.0 - 0.1 * (0.5 + 0.5))


def test_adam_closed_form():
    # After bias correction the first step moves every element by lr * g / (|g| + eps).
    p, g = np.array([1.0, -2.0]), np.array([0.3, -4.0])
    p1, m, v = ref.adam_step(p, g, np.zeros(2), np.zeros(2), 1, 0.01, 0.9, 0.999, 1e-8, 0.0, False)
    assert np.allclose(p1, p - 0.01 * np.sign(g), atol=1e-9)
    # AdamW decays the weights before the update, independently of g.
    pw, _, _ = ref.adam_step(p, g, np.zeros(2), np.zeros(2), 1, 0.01, 0.9, 0.999, 1e-8, 0.1, True)
    assert np.allclose(pw, p * (1 - 0.001) - 0.01 * np.sign(g), atol=1e-9)


def bf16_cases() -> np.ndarray:
    """float32 bit patterns for the bf16 rounding tests: signed zeros, denormals, the
    smallest normal, ties to even both ways, just off a tie, the largest finite (which
    rounds to inf), infinities, quiet and signalling NaNs, then random bits."""
    special = [0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x007F8000, 0x00800000,
               0x00808000, 0x3F800000, 0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF,
               0xBF808000, 0x7F7F7FFF, 0x7F7F8000, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000,
               0xFF800000, 0x7FC00000, 0x7F800001, 0x7FA00000, 0xFF800001, 0x7F80FFFF]
    rnd = np.random.default_rng(5).integers(0, 2**32, 4000, dtype=np.uint64)
    return np.concatenate([np.array(special, np.uint64), rnd]).astype(np.uint32)


def test_bf16_round_vectorized_matches_definition():
    bits = bf16_cases()
    got = ref.bf16_round(bits.view(np.float32)).view(np.uint32)
    want = np.array([ref.bf16_bits_scalar(int(u)) << 16 for u in bits], np.uint32)
    np.testing.assert_array_equal(got, want)


def test_bf16_definition_on_named_cases():
    """The definition itself, on values whose answers are known by hand."""
    b = ref.bf16_bits_scalar
    assert b(0x3F808000) == 0x3F80 and b(0x3F818000) == 0x3F82  # ties go to the even one
    assert b(0x3F808001) == 0x3F81 and b(0x3F807FFF) == 0x3F80
    assert b(0x7F7FFFFF) == 0x7F80 and b(0x7F7F7FFF) == 0x7F7F  # overflow rounds to inf
    assert b(0x00000001) == 0 and b(0x807FFFFF) == 0x8000      # denormals: signed zero
    assert b(0x7F800001) == 0x7FC0 and b(0xFF800000) == 0xFF80  # NaN quieted, inf kept
