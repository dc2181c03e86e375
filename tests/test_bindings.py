"""Checks shared by every binding (cpp/bindings/checks.cpp)."""
import pickle

import numpy as np
import pytest

from resnet_cpp import _core


def test_unpickled_arrays_are_accepted():
    # Unpickling gives an equal but distinct dtype object; the check compares by value.
    x = pickle.loads(pickle.dumps(np.arange(-3, 5, dtype=np.float32).reshape(2, 4)))
    assert np.array_equal(_core.relu_forward(x), np.maximum(x, 0))
    labels = pickle.loads(pickle.dumps(np.array([1, 0], dtype=np.int64)))
    loss, _ = _core.softmax_cross_entropy(np.zeros((2, 3), np.float32), labels, 0.0)
    assert np.isclose(loss, np.log(3))


@pytest.mark.parametrize("bad,err", [([1.0, 2.0], TypeError), (np.zeros(3), TypeError),
                                     (np.zeros((2, 4), np.float32)[:, ::2], ValueError)])
def test_type_dtype_and_contiguity_errors_name_the_argument(bad, err):
    with pytest.raises(err, match="x"):
        _core.relu_forward(bad)
