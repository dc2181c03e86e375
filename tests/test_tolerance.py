import numpy as np
import pytest
from tolerance import assert_close


def test_passes_within_tolerance():
    assert_close(np.array([1.0, 2.0]), np.array([1.0 + 5e-5, 2.0]), rtol=1e-4, atol=0)


def test_fails_outside_tolerance_and_names_worst():
    with pytest.raises(AssertionError, match=r"worst at \(1,\)"):
        assert_close(np.array([1.0, 2.5]), np.array([1.0, 2.0]), name="y")


def test_rejects_nan_and_shape_mismatch():
    with pytest.raises(AssertionError, match="non-finite"):
        assert_close(np.array([np.nan]), np.array([0.0]))
    with pytest.raises(AssertionError, match="shape"):
        assert_close(np.zeros(3), np.zeros(4))
