"""
resnet_cpp kernels (C++, OpenMP, AVX2/AVX-512 with runtime dispatch)
"""
from __future__ import annotations
import numpy
import numpy.typing
import typing
__all__: list[str] = ['active_isa', 'adam_step', 'add_forward', 'add_relu_backward', 'add_relu_forward', 'amx_status', 'batch_norm_apply', 'batch_norm_backward', 'batch_norm_backward_apply', 'batch_norm_backward_reduce', 'batch_norm_finalize', 'batch_norm_forward_eval', 'batch_norm_forward_train', 'batch_norm_stats', 'bf16_active', 'compiled_isas', 'conv2d_backward_data', 'conv2d_backward_weight', 'conv2d_forward', 'conv_algorithm', 'crop_flip_params', 'detected_isa', 'fma_peak_gflops', 'global_avg_pool_backward', 'global_avg_pool_forward', 'impl_list', 'impl_name', 'impl_ops', 'linear_backward', 'linear_forward', 'max_isa', 'max_num_threads', 'max_pool2d_backward', 'max_pool2d_forward', 'nchw_to_nhwc', 'nhwc_to_nchw', 'num_threads', 'openmp', 'precision', 'random_crop_flip', 'relu_backward', 'relu_forward', 'round_to_bf16', 'set_conv_algorithm', 'set_max_isa', 'set_num_threads', 'set_precision', 'sgd_step', 'shortcut_a_backward', 'shortcut_a_forward', 'softmax_cross_entropy']
def active_isa() -> str:
    """
    The path kernels run now: best compiled and supported path, capped by max_isa.
    """
def adam_step(param: typing.Any, grad: typing.Any, m: typing.Any, v: typing.Any, step: typing.Any, lr: typing.Any, beta1: typing.SupportsFloat | typing.SupportsIndex = 0.9, beta2: typing.SupportsFloat | typing.SupportsIndex = 0.999, eps: typing.SupportsFloat | typing.SupportsIndex = 1e-08, weight_decay: typing.SupportsFloat | typing.SupportsIndex = 0.0, decoupled: bool = False) -> None:
    """
    In-place Adam (decoupled=False) or AdamW (decoupled=True) step with bias correction;
    step counts from 1. step (int64) and lr (float32) may be one-element arrays on the
    op's device, read when the step runs.
    """
def add_forward(a: typing.Any, b: typing.Any, out: typing.Any = None) -> numpy.typing.NDArray[numpy.float32]:
    """
    y = a + b (same shapes).
    """
def add_relu_backward(dy: typing.Any, y: typing.Any, out: typing.Any = None) -> numpy.typing.NDArray[numpy.float32]:
    """
    d = dy * (y > 0), the gradient of add_relu for both a and b.
    """
def add_relu_forward(a: typing.Any, b: typing.Any, out: typing.Any = None) -> numpy.typing.NDArray[numpy.float32]:
    """
    y = max(a + b, 0) (same shapes): the residual join of a ResNet block.
    """
def amx_status() -> str:
    """
    Whether AMX tiles could run here (CPUID, XCR0, Linux permission); no kernel uses them yet.
    """
def batch_norm_apply(x: typing.Any, gamma: typing.Any, beta: typing.Any, mean: typing.Any, rstd: typing.Any, relu: bool = False, out: typing.Any = None, residual: typing.Any = None) -> numpy.typing.NDArray[numpy.float32]:
    """
    y = relu?((x - mean) * gamma * rstd + beta [+ residual]) over x (N,H,W,C) or (M,C):
    the second pass of batch_norm_forward_train, bit for bit.
    """
def batch_norm_backward(dy: typing.Any, x: typing.Any, gamma: typing.Any, mean: typing.Any, rstd: typing.Any, beta: typing.Any = None, relu: bool = False, train: bool = True, out: typing.Any = None, add: typing.Any = None, dgamma_out: typing.Any = None, dbeta_out: typing.Any = None) -> tuple[numpy.typing.NDArray[numpy.float32], numpy.typing.NDArray[numpy.float32], numpy.typing.NDArray[numpy.float32]]:
    """
    Batch norm backward: returns (dx, dgamma, dbeta). relu: the forward fused a ReLU; dy
    is masked where (x - mean) * gamma * rstd + beta <= 0, recomputed from x exactly as
    the forward did (needs beta). train: mean/rstd are the cached batch stats; else the
    running ones (frozen BN, dx = dy * gamma * rstd). add (x's shape): summed into dx in
    the same pass. out may be dy or x (in place), not add.
    """
def batch_norm_backward_apply(dy: typing.Any, x: typing.Any, gamma: typing.Any, mean: typing.Any, rstd: typing.Any, sdy: typing.Any, sdyx: typing.Any, count: typing.SupportsFloat | typing.SupportsIndex, beta: typing.Any = None, relu: bool = False, out: typing.Any = None, add: typing.Any = None) -> numpy.typing.NDArray[numpy.float32]:
    """
    Second pass of the training backward: dx from batch_norm_backward_reduce's sums over
    `count` values (summed over processes for synchronized BN); add and out as in
    batch_norm_backward.
    """
def batch_norm_backward_reduce(dy: typing.Any, x: typing.Any, gamma: typing.Any, mean: typing.Any, rstd: typing.Any, beta: typing.Any = None, relu: bool = False) -> tuple[numpy.typing.NDArray[numpy.float64], numpy.typing.NDArray[numpy.float64], numpy.typing.NDArray[numpy.float32], numpy.typing.NDArray[numpy.float32]]:
    """
    First pass of the training backward: returns (sdy, sdyx) float64 (C,), the sums of
    dy' and dy' * (x - mean) (dy' = dy ReLU-masked as in batch_norm_backward), and
    (dgamma, dbeta) float32 (C,) from them.
    """
def batch_norm_finalize(s1: typing.Any, s2: typing.Any, pivot: typing.Any, count: typing.SupportsFloat | typing.SupportsIndex, running_mean: typing.Any, running_var: typing.Any, momentum: typing.SupportsFloat | typing.SupportsIndex = 0.1, eps: typing.SupportsFloat | typing.SupportsIndex = 1e-05) -> tuple[numpy.typing.NDArray[numpy.float32], numpy.typing.NDArray[numpy.float32]]:
    """
    From batch_norm_stats sums over `count` values (> 1, e.g. summed over processes):
    returns (mean, rstd) float32 (C,) and updates running_mean/running_var in place, as
    batch_norm_forward_train does. pivot must not share memory with running_mean (pass a copy).
    """
def batch_norm_forward_eval(x: typing.Any, gamma: typing.Any, beta: typing.Any, running_mean: typing.Any, running_var: typing.Any, eps: typing.SupportsFloat | typing.SupportsIndex = 1e-05, relu: bool = False, out: typing.Any = None, residual: typing.Any = None, mean_out: typing.Any = None, rstd_out: typing.Any = None) -> numpy.typing.NDArray[numpy.float32]:
    """
    Eval batch norm with running stats over x (N,H,W,C) or (M,C); residual (x's shape) is
    added to the normalized value, then relu fuses max(y, 0). Returns y. mean_out and
    rstd_out (C,), if given, receive running_mean and 1/sqrt(running_var + eps): the
    statistics batch_norm_backward(train=False) takes.
    """
def batch_norm_forward_train(x: typing.Any, gamma: typing.Any, beta: typing.Any, running_mean: typing.Any, running_var: typing.Any, momentum: typing.SupportsFloat | typing.SupportsIndex = 0.1, eps: typing.SupportsFloat | typing.SupportsIndex = 1e-05, relu: bool = False, out: typing.Any = None, residual: typing.Any = None, mean_out: typing.Any = None, rstd_out: typing.Any = None) -> tuple[numpy.typing.NDArray[numpy.float32], numpy.typing.NDArray[numpy.float32], numpy.typing.NDArray[numpy.float32]]:
    """
    Training batch norm over x (N,H,W,C) or (M,C): returns (y, mean (C,), rstd (C,)) and
    updates running_mean/running_var in place (unbiased variance). residual (x's shape)
    is added to the normalized value, then relu fuses max(y, 0).
    """
def batch_norm_stats(x: typing.Any, pivot: typing.Any) -> tuple[numpy.typing.NDArray[numpy.float64], numpy.typing.NDArray[numpy.float64]]:
    """
    Per-channel sums over x (N,H,W,C) or (M,C): returns (s1, s2), float64 (C,), of
    d = x - pivot and d**2. A pivot near the mean (running_mean) avoids cancellation.
    """
def bf16_active() -> bool:
    """
    True when bf16 precision is set and the active ISA path has a bf16 dot product.
    """
def compiled_isas() -> list[str]:
    """
    Instruction-set paths compiled into this build, scalar first.
    """
def conv2d_backward_data(dy: typing.Any, w: typing.Any, H: typing.SupportsInt | typing.SupportsIndex, W: typing.SupportsInt | typing.SupportsIndex, stride: typing.SupportsInt | typing.SupportsIndex = 1, pad: typing.SupportsInt | typing.SupportsIndex = 0, out: typing.Any = None) -> numpy.typing.NDArray[numpy.float32]:
    """
    dx (N,H,W,C) from dy (N,P,Q,K) and w (R,S,C,K); H, W: input size. NHWC, RSCK.
    """
def conv2d_backward_weight(x: typing.Any, dy: typing.Any, R: typing.SupportsInt | typing.SupportsIndex, S: typing.SupportsInt | typing.SupportsIndex, stride: typing.SupportsInt | typing.SupportsIndex = 1, pad: typing.SupportsInt | typing.SupportsIndex = 0, with_bias: bool = True, dw_out: typing.Any = None, db_out: typing.Any = None) -> tuple[numpy.typing.NDArray[numpy.float32], typing.Any]:
    """
    (dw (R,S,C,K), db (K,) or None) from x (N,H,W,C) and dy (N,P,Q,K). NHWC, RSCK.
    """
def conv2d_forward(x: typing.Any, w: typing.Any, b: typing.Any = None, stride: typing.SupportsInt | typing.SupportsIndex = 1, pad: typing.SupportsInt | typing.SupportsIndex = 0, out: typing.Any = None) -> numpy.typing.NDArray[numpy.float32]:
    """
    y (N,P,Q,K) = conv(x (N,H,W,C), w (R,S,C,K)) + b (K,) or None. NHWC, RSCK.
    """
def conv_algorithm() -> str:
    ...
def crop_flip_params(seed: int, i: typing.SupportsInt | typing.SupportsIndex, padding: typing.SupportsInt | typing.SupportsIndex, flip: bool) -> tuple:
    """
    The random choices random_crop_flip makes for image i: (oy, ox, flipped), the crop
    offset in the padded image and whether it is mirrored.
    """
def detected_isa() -> str:
    """
    Best instruction set this CPU and OS support (compiled in or not).
    """
def fma_peak_gflops(iters: typing.SupportsInt | typing.SupportsIndex = 200000000) -> float:
    """
    Measured FP32 FMA peak (GFLOP/s) of the active ISA path on num_threads() threads.
    """
def global_avg_pool_backward(dy: typing.Any, H: typing.SupportsInt | typing.SupportsIndex, W: typing.SupportsInt | typing.SupportsIndex, out: typing.Any = None) -> numpy.ndarray:
    """
    Global average pool backward: dy (N,C) -> dx (N,H,W,C) = dy / (H*W).
    """
def global_avg_pool_forward(x: typing.Any, out: typing.Any = None) -> numpy.ndarray:
    """
    Global average pool: x (N,H,W,C) -> y (N,C).
    """
def impl_list(op: str) -> list[str]:
    """
    op's implementations compiled in, best first and the scalar one last, as 'name:isa'; a call runs the first that the ISA cap allows and that applies to it.
    """
def impl_name(op: str, *args, **kwargs) -> str:
    """
    The implementation ('name:isa') a call of op runs now (ISA cap, conv algorithm and precision settings); conv ops take the shape N, H, W, C, K, R, S, stride, pad, positionally or by name (impl_ops() lists each op's).
    """
def impl_ops() -> dict:
    """
    Every op with an implementation list: {op: the shape arguments impl_name takes}.
    """
def linear_backward(dy: typing.Any, x: typing.Any, w: typing.Any, need_dx: bool = True, with_bias: bool = True, dx_out: typing.Any = None, dw_out: typing.Any = None, db_out: typing.Any = None) -> tuple:
    """
    Linear backward: dy (N,O) -> (dx (N,F) or None, dw (O,F), db (O,) or None);
    dx_out/dw_out/db_out, if given, are reused (overwritten).
    """
def linear_forward(x: typing.Any, w: typing.Any, b: typing.Any = None, out: typing.Any = None) -> numpy.ndarray:
    """
    Fully connected: x (N,F), w (O,F), b (O,) or None -> y (N,O) = x w^T + b.
    """
def max_isa() -> str:
    ...
def max_num_threads() -> int:
    """
    The largest thread count set_num_threads accepts: 4 per logical CPU.
    """
def max_pool2d_backward(dy: typing.Any, argmax: typing.Any, H: typing.SupportsInt | typing.SupportsIndex, W: typing.SupportsInt | typing.SupportsIndex, k: typing.SupportsInt | typing.SupportsIndex, stride: typing.SupportsInt | typing.SupportsIndex, pad: typing.SupportsInt | typing.SupportsIndex, out: typing.Any = None) -> numpy.ndarray:
    """
    Max pool backward: dy (N,P,Q,C) and the forward's argmax -> dx (N,H,W,C); H, W and the
    window (k, stride, pad) are the forward's.
    """
def max_pool2d_forward(x: typing.Any, k: typing.SupportsInt | typing.SupportsIndex, stride: typing.SupportsInt | typing.SupportsIndex, pad: typing.SupportsInt | typing.SupportsIndex, out: typing.Any = None, argmax_out: typing.Any = None) -> tuple:
    """
    Max pool, NHWC: x (N,H,W,C) -> (y (N,P,Q,C), argmax int32 (N,P,Q,C) = h*W+w of the
    first maximum in row-major window order). -inf padding; needs pad <= k//2.
    """
def nchw_to_nhwc(x: typing.Any, out: typing.Any = None) -> numpy.typing.NDArray[numpy.float32]:
    """
    x (N,C,H,W) -> (N,H,W,C).
    """
def nhwc_to_nchw(x: typing.Any, out: typing.Any = None) -> numpy.typing.NDArray[numpy.float32]:
    """
    x (N,H,W,C) -> (N,C,H,W).
    """
def num_threads() -> int:
    ...
def precision() -> str:
    ...
def random_crop_flip(x: typing.Any, padding: typing.SupportsInt | typing.SupportsIndex, flip: bool, seed: int, channels_last: bool, out: typing.Any = None, first_index: typing.SupportsInt | typing.SupportsIndex = 0) -> numpy.ndarray:
    """
    Per image: zero-pad by `padding`, random HxW crop, and (flip=True) mirror with
    probability 1/2. Choices depend only on (seed, first_index + image index): any
    thread count gives the same output, and a batch's part at offset first_index gets
    the choices the whole batch would.
    """
def relu_backward(dy: typing.Any, y: typing.Any, out: typing.Any = None) -> numpy.typing.NDArray[numpy.float32]:
    """
    dx = dy * (y > 0), y the forward output; dy and y have the same shape.
    """
def relu_forward(x: typing.Any, out: typing.Any = None) -> numpy.typing.NDArray[numpy.float32]:
    """
    y = max(x, 0), any shape.
    """
def round_to_bf16(x: typing.Any) -> numpy.typing.NDArray[numpy.float32]:
    """
    x (n,) float32 rounded to bf16 as the bf16 convolutions round their operands (nearest even, NaN quiet, denormals to signed zero), returned as float32.
    """
def set_conv_algorithm(name: str) -> None:
    """
    3x3 stride-1 convolutions: 'auto' (default: the fastest float32-precise choice), 'fast' (F(4x4,3x3) Winograd wherever it is faster; rounds more), 'direct', 'winograd2' (F(2x2,3x3)) or 'winograd4' (F(4x4,3x3)); one name for every pass or 'forward=...,backward_data=...,backward_weight=...'. As RESNET_CPP_CONV_ALGO.
    """
def set_max_isa(isa: str) -> None:
    """
    Cap the path: 'scalar', 'avx2', 'avx512' or 'avx512_bf16' (as RESNET_CPP_MAX_ISA).
    """
def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Threads used by every kernel (default: OMP_NUM_THREADS, else all cores).
    """
def set_precision(name: str) -> None:
    """
    Convolution operands: 'fp32' (default) or 'bf16' (rounded to bf16, fp32 sums; runs only where bf16_active()); as RESNET_CPP_PRECISION.
    """
def sgd_step(param: typing.Any, grad: typing.Any, momentum_buf: typing.Any, lr: typing.Any, momentum: typing.SupportsFloat | typing.SupportsIndex = 0.0, weight_decay: typing.SupportsFloat | typing.SupportsIndex = 0.0, nesterov: bool = False) -> None:
    """
    In-place SGD step (PyTorch semantics): g = grad + wd*p; buf = momentum*buf + g;
    g = g + momentum*buf if nesterov else buf; p -= lr*g. momentum_buf (zeros at start)
    is required when momentum > 0. lr: a number, or a one-element float32 array on the
    op's device, read when the step runs (a CUDA graph then follows the schedule).
    """
def shortcut_a_backward(dy: typing.Any, channels_in: typing.SupportsInt | typing.SupportsIndex, H: typing.SupportsInt | typing.SupportsIndex, W: typing.SupportsInt | typing.SupportsIndex, stride: typing.SupportsInt | typing.SupportsIndex, out: typing.Any = None, accumulate: bool = False) -> numpy.typing.NDArray[numpy.float32]:
    """
    Backward of shortcut_a_forward: dx (N,H,W,channels_in); accumulate adds into out.
    """
def shortcut_a_forward(x: typing.Any, channels_out: typing.SupportsInt | typing.SupportsIndex, stride: typing.SupportsInt | typing.SupportsIndex, out: typing.Any = None) -> numpy.typing.NDArray[numpy.float32]:
    """
    Option-A shortcut, NHWC: x (N,H,W,C) -> (N,ceil(H/stride),ceil(W/stride),channels_out),
    subsampled by stride, channels zero-padded by (K-C)//2 below and the rest above.
    """
def softmax_cross_entropy(logits: typing.Any, labels: typing.Any, label_smoothing: typing.SupportsFloat | typing.SupportsIndex = 0.0, dlogits_out: typing.Any = None, loss_out: typing.Any = None, check_labels: bool = True) -> tuple:
    """
    Softmax cross-entropy: logits (N,K), labels int32/int64 (N,) in [0,K) ->
    (loss, dlogits (N,K) already divided by N). loss is the batch mean: a float from
    _core, a 0-d float32 DeviceArray from _cuda, or loss_out (0-d float32) when given.
    check_labels raises ValueError on a label outside [0,K) (on the GPU it waits for the
    device); False skips the check (inside a CUDA graph) and such rows give NaN.
    """
__version__: str = 'dev'
openmp: bool = True
