"""Checks shared by every binding (cpp/bindings/checks.cpp)."""
import pickle

import numpy as np
import pytest

from resnet_cpp import _core


def test_unpickled_arrays_are_accepted():
    # Unpickling gives an equal but distinct dtype object; the check compares by value.
    x = pickle.loads(pickle.dumps(np.arange(-3, 5, dtype=np.float32).reshape(2, 4)))
    assert np.array_equal(_core.relu_forward(x), np.maximum(x, 0))
    logits = np.array([[0, 0, 9], [0, 9, 0]], np.float32)
    for dtype in (np.int64, np.int32):  # int32 labels must not be read as int64
        labels = pickle.loads(pickle.dumps(np.array([2, 1], dtype=dtype)))
        loss, _ = _core.softmax_cross_entropy(logits, labels, 0.0)
        assert loss < 1e-3
    y, argmax = _core.max_pool2d_forward(np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1), 2, 2, 0)
    argmax = pickle.loads(pickle.dumps(argmax))
    assert _core.max_pool2d_backward(np.ones_like(y), argmax, 4, 4, 2, 2, 0).sum() == 4


@pytest.mark.parametrize("bad,err", [([1.0, 2.0], TypeError), (np.zeros(3), TypeError),
                                     (np.zeros((2, 4), np.float32)[:, ::2], ValueError)])
def test_type_dtype_and_contiguity_errors_name_the_argument(bad, err):
    with pytest.raises(err, match=r"^x\b"):
        _core.relu_forward(bad)
