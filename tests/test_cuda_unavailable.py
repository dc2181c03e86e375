"""resnet_cpp.cuda and _cuda where CUDA cannot run: not built (the default CPU build) or built
but without a driver/device. Both must give a clear reason, never a crash. Skips on machines
where CUDA works (tests/test_cuda.py covers those)."""
from __future__ import annotations

import numpy as np
import pytest

import resnet_cpp
from resnet_cpp import cuda

try:
    from resnet_cpp import _cuda
except ImportError:
    _cuda = None

if _cuda is not None and _cuda.available():
    pytest.skip("CUDA is available here: tests/test_cuda.py runs instead", allow_module_level=True)


def test_helpers_report_why():
    assert not cuda.is_available()
    why = cuda.why_unavailable()
    if _cuda is None:
        assert why.startswith(cuda.NOT_BUILT)
        assert cuda.device_summary() == cuda.NOT_BUILT
    else:
        assert why == _cuda.why_unavailable() and why
        assert any(s in why for s in ("driver", "device", "architectures", "initialization"))
        assert cuda.device_summary() == "unavailable: " + why
    info = resnet_cpp.build_info()
    assert info["cuda_built"] == (_cuda is not None)


def test_helpers_raise_runtime_error_with_the_reason():
    expected = "built without CUDA" if _cuda is None else "CUDA is not available"
    for call in (lambda: cuda.require(), lambda: cuda.to_device(np.zeros(3, np.float32)),
                 lambda: cuda.zeros((2, 3)), lambda: cuda.mem_info(), lambda: cuda.synchronize(),
                 lambda: cuda.DeviceArray):
        with pytest.raises(RuntimeError, match=expected):
            call()


@pytest.mark.skipif(_cuda is None, reason="resnet_cpp._cuda not built")
def test_module_calls_raise_with_the_cuda_error():
    assert not _cuda.available()
    assert _cuda.device_summary().startswith("unavailable: ")
    why = _cuda.why_unavailable()
    for call in (lambda: _cuda.DeviceArray.from_numpy(np.zeros(3, np.float32)),
                 lambda: _cuda.DeviceArray.zeros((2,)), lambda: _cuda.mem_info(),
                 lambda: _cuda.synchronize(), lambda: _cuda.device_info()):
        with pytest.raises(RuntimeError) as e:
            call()
        assert why in str(e.value)
    # Argument checks still come first and name the argument.
    with pytest.raises(TypeError, match="x: expected a resnet_cpp._cuda.DeviceArray"):
        _cuda.conv2d_forward(np.zeros((1, 3, 3, 1), np.float32), None)


def test_device_cuda_stops_with_the_reason_and_the_way_to_get_it(capsys):
    from resnet_cpp import models
    from resnet_cpp.cli import main
    from resnet_cpp.data import load_dataset

    expected = "built without CUDA" if _cuda is None else "CUDA is not available"
    hint = "RESNET_CPP_CUDA=1 pip install" if _cuda is None else "NVIDIA GPU"
    assert main(["train", "--device", "cuda", "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("resnet-cpp train: error: --device cuda: ") and expected in err
    assert hint in err
    model = models.create("resnet20", widths=(4, 4, 4))
    with pytest.raises(RuntimeError, match=expected):
        model.to("cuda")
    assert model.device == "cpu"
    train, test = load_dataset("bundled")
    with pytest.raises(RuntimeError, match=expected):
        resnet_cpp.train.fit(model, train, test, epochs=1, device="cuda")
    with pytest.raises(ValueError, match=r"^device: expected 'cpu' or 'cuda', got 'tpu'"):
        model.to("tpu")
