// ops.h: the op surface that _core (cpp/bindings/) and _cuda (cpp/cuda/bindings/) both
// implement. Each op's name, argument order, keyword names, defaults and docstring are
// written once, here: a module registers its implementation with rc::ops::<op>(m, impl),
// so the two modules cannot drift (pybind11 also refuses, at compile time, an impl whose
// arity differs from the argument list). Shapes and errors come from checks.h, the same
// checker in both modules; tests/test_op_table.py compares the built modules' tables.
//
// Arrays are NumPy arrays for _core and resnet_cpp._cuda.DeviceArrays for _cuda (never
// mixed). Activations are NHWC, conv weights RSCK; outputs are overwritten unless a flag
// says accumulate; out=/..._out= arguments receive a result instead of a fresh array.
#pragma once
#include <pybind11/pybind11.h>

#include <utility>

namespace rc::ops {
namespace py = pybind11;
using py::arg;

#define RC_OP(op) template <class F> void op(py::module_& m, F&& impl)
#define RC_DEF(op, ...) m.def(#op, std::forward<F>(impl), __VA_ARGS__)

// ------------------------------------------------------------------ conv

RC_OP(conv2d_forward) {
    RC_DEF(conv2d_forward, arg("x"), arg("w"), arg("b") = py::none(), arg("stride") = 1,
           arg("pad") = 0, arg("out") = py::none(),
           "y (N,P,Q,K) = conv(x (N,H,W,C), w (R,S,C,K)) + b (K,) or None. NHWC, RSCK.");
}
RC_OP(conv2d_backward_data) {
    RC_DEF(conv2d_backward_data, arg("dy"), arg("w"), arg("H"), arg("W"), arg("stride") = 1,
           arg("pad") = 0, arg("out") = py::none(),
           "dx (N,H,W,C) from dy (N,P,Q,K) and w (R,S,C,K); H, W: input size. NHWC, RSCK.");
}
RC_OP(conv2d_backward_weight) {
    RC_DEF(conv2d_backward_weight, arg("x"), arg("dy"), arg("R"), arg("S"), arg("stride") = 1,
           arg("pad") = 0, arg("with_bias") = true, arg("dw_out") = py::none(),
           arg("db_out") = py::none(),
           "(dw (R,S,C,K), db (K,) or None) from x (N,H,W,C) and dy (N,P,Q,K). NHWC, RSCK.");
}

// ------------------------------------------------------------------ batch norm

RC_OP(batch_norm_forward_train) {
    RC_DEF(batch_norm_forward_train, arg("x"), arg("gamma"), arg("beta"), arg("running_mean"),
           arg("running_var"), arg("momentum") = 0.1, arg("eps") = 1e-5, arg("relu") = false,
           arg("out") = py::none(), arg("residual") = py::none(), arg("mean_out") = py::none(),
           arg("rstd_out") = py::none(),
           "Training batch norm over x (N,H,W,C) or (M,C): returns (y, mean (C,), rstd (C,)) and\n"
           "updates running_mean/running_var in place (unbiased variance). residual (x's shape)\n"
           "is added to the normalized value, then relu fuses max(y, 0).");
}
RC_OP(batch_norm_forward_eval) {
    RC_DEF(batch_norm_forward_eval, arg("x"), arg("gamma"), arg("beta"), arg("running_mean"),
           arg("running_var"), arg("eps") = 1e-5, arg("relu") = false, arg("out") = py::none(),
           arg("residual") = py::none(), arg("mean_out") = py::none(), arg("rstd_out") = py::none(),
           "Eval batch norm with running stats over x (N,H,W,C) or (M,C); residual (x's shape) is\n"
           "added to the normalized value, then relu fuses max(y, 0). Returns y. mean_out and\n"
           "rstd_out (C,), if given, receive running_mean and 1/sqrt(running_var + eps): the\n"
           "statistics batch_norm_backward(train=False) takes.");
}
RC_OP(batch_norm_backward) {
    RC_DEF(batch_norm_backward, arg("dy"), arg("x"), arg("gamma"), arg("mean"), arg("rstd"),
           arg("beta") = py::none(), arg("relu") = false, arg("train") = true,
           arg("out") = py::none(), arg("add") = py::none(), arg("dgamma_out") = py::none(),
           arg("dbeta_out") = py::none(),
           "Batch norm backward: returns (dx, dgamma, dbeta). relu: the forward fused a ReLU; dy\n"
           "is masked where (x - mean) * gamma * rstd + beta <= 0, recomputed from x exactly as\n"
           "the forward did (needs beta). train: mean/rstd are the cached batch stats; else the\n"
           "running ones (frozen BN, dx = dy * gamma * rstd). add (x's shape): summed into dx in\n"
           "the same pass. out may be dy or x (in place), not add.");
}

// ------------------------------------------------------------------ elementwise and layout

RC_OP(relu_forward) {
    RC_DEF(relu_forward, arg("x"), arg("out") = py::none(), "y = max(x, 0), any shape.");
}
RC_OP(relu_backward) {
    RC_DEF(relu_backward, arg("dy"), arg("y"), arg("out") = py::none(),
           "dx = dy * (y > 0), y the forward output; dy and y have the same shape.");
}
RC_OP(add_forward) {
    RC_DEF(add_forward, arg("a"), arg("b"), arg("out") = py::none(), "y = a + b (same shapes).");
}
RC_OP(add_relu_forward) {
    RC_DEF(add_relu_forward, arg("a"), arg("b"), arg("out") = py::none(),
           "y = max(a + b, 0) (same shapes): the residual join of a ResNet block.");
}
RC_OP(add_relu_backward) {
    RC_DEF(add_relu_backward, arg("dy"), arg("y"), arg("out") = py::none(),
           "d = dy * (y > 0), the gradient of add_relu for both a and b.");
}
RC_OP(shortcut_a_forward) {
    RC_DEF(shortcut_a_forward, arg("x"), arg("channels_out"), arg("stride"), arg("out") = py::none(),
           "Option-A shortcut, NHWC: x (N,H,W,C) -> (N,ceil(H/stride),ceil(W/stride),channels_out),\n"
           "subsampled by stride, channels zero-padded by (K-C)//2 below and the rest above.");
}
RC_OP(shortcut_a_backward) {
    RC_DEF(shortcut_a_backward, arg("dy"), arg("channels_in"), arg("H"), arg("W"), arg("stride"),
           arg("out") = py::none(), arg("accumulate") = false,
           "Backward of shortcut_a_forward: dx (N,H,W,channels_in); accumulate adds into out.");
}
RC_OP(nchw_to_nhwc) {
    RC_DEF(nchw_to_nhwc, arg("x"), arg("out") = py::none(), "x (N,C,H,W) -> (N,H,W,C).");
}
RC_OP(nhwc_to_nchw) {
    RC_DEF(nhwc_to_nchw, arg("x"), arg("out") = py::none(), "x (N,H,W,C) -> (N,C,H,W).");
}

// ------------------------------------------------------------------ pooling

RC_OP(max_pool2d_forward) {
    RC_DEF(max_pool2d_forward, arg("x"), arg("k"), arg("stride"), arg("pad"),
           arg("out") = py::none(), arg("argmax_out") = py::none(),
           "Max pool, NHWC: x (N,H,W,C) -> (y (N,P,Q,C), argmax int32 (N,P,Q,C) = h*W+w of the\n"
           "first maximum in row-major window order). -inf padding; needs pad <= k//2.");
}
RC_OP(max_pool2d_backward) {
    RC_DEF(max_pool2d_backward, arg("dy"), arg("argmax"), arg("H"), arg("W"), arg("k"),
           arg("stride"), arg("pad"), arg("out") = py::none(),
           "Max pool backward: dy (N,P,Q,C) and the forward's argmax -> dx (N,H,W,C); H, W and the\n"
           "window (k, stride, pad) are the forward's.");
}
RC_OP(global_avg_pool_forward) {
    RC_DEF(global_avg_pool_forward, arg("x"), arg("out") = py::none(),
           "Global average pool: x (N,H,W,C) -> y (N,C).");
}
RC_OP(global_avg_pool_backward) {
    RC_DEF(global_avg_pool_backward, arg("dy"), arg("H"), arg("W"), arg("out") = py::none(),
           "Global average pool backward: dy (N,C) -> dx (N,H,W,C) = dy / (H*W).");
}

// ------------------------------------------------------------------ linear

RC_OP(linear_forward) {
    RC_DEF(linear_forward, arg("x"), arg("w"), arg("b") = py::none(), arg("out") = py::none(),
           "Fully connected: x (N,F), w (O,F), b (O,) or None -> y (N,O) = x w^T + b.");
}
RC_OP(linear_backward) {
    RC_DEF(linear_backward, arg("dy"), arg("x"), arg("w"), arg("need_dx") = true,
           arg("with_bias") = true, arg("dx_out") = py::none(), arg("dw_out") = py::none(),
           arg("db_out") = py::none(),
           "Linear backward: dy (N,O) -> (dx (N,F) or None, dw (O,F), db (O,) or None);\n"
           "dx_out/dw_out/db_out, if given, are reused (overwritten).");
}

// ------------------------------------------------------------------ loss

RC_OP(softmax_cross_entropy) {
    RC_DEF(softmax_cross_entropy, arg("logits"), arg("labels"), arg("label_smoothing") = 0.0,
           arg("dlogits_out") = py::none(), arg("loss_out") = py::none(),
           arg("check_labels") = true,
           "Softmax cross-entropy: logits (N,K), labels int32/int64 (N,) in [0,K) ->\n"
           "(loss, dlogits (N,K) already divided by N). loss is the batch mean: a float from\n"
           "_core, a 0-d float32 DeviceArray from _cuda, or loss_out (0-d float32) when given.\n"
           "check_labels raises ValueError on a label outside [0,K) (on the GPU it waits for the\n"
           "device); False skips the check (inside a CUDA graph) and such rows give NaN.");
}

// ------------------------------------------------------------------ optimizers (in place)

RC_OP(sgd_step) {
    RC_DEF(sgd_step, arg("param"), arg("grad"), arg("momentum_buf"), arg("lr"),
           arg("momentum") = 0.0, arg("weight_decay") = 0.0, arg("nesterov") = false,
           "In-place SGD step (PyTorch semantics): g = grad + wd*p; buf = momentum*buf + g;\n"
           "g = g + momentum*buf if nesterov else buf; p -= lr*g. momentum_buf (zeros at start)\n"
           "is required when momentum > 0. lr: a number, or a one-element float32 array on the\n"
           "op's device, read when the step runs (a CUDA graph then follows the schedule).");
}
RC_OP(adam_step) {
    RC_DEF(adam_step, arg("param"), arg("grad"), arg("m"), arg("v"), arg("step"), arg("lr"),
           arg("beta1") = 0.9, arg("beta2") = 0.999, arg("eps") = 1e-8, arg("weight_decay") = 0.0,
           arg("decoupled") = false,
           "In-place Adam (decoupled=False) or AdamW (decoupled=True) step with bias correction;\n"
           "step counts from 1. step (int64) and lr (float32) may be one-element arrays on the\n"
           "op's device, read when the step runs.");
}

#undef RC_DEF
#undef RC_OP

}  // namespace rc::ops
