// conv.h: 2-D convolution entry points (cpp/conv.cpp) and their process-wide settings:
// the algorithm per pass (conv.cpp) and the operand precision (conv_bf16.cpp).
//   conv2d_forward         y (N,P,Q,K)  = x (N,H,W,C) * w (R,S,C,K) + b (K)
//   conv2d_backward_data   dx (N,H,W,C) from dy (N,P,Q,K) and w
//   conv2d_backward_weight dw (R,S,C,K) and db (K) from x and dy
// NHWC activations, RSCK weights. All overwrite their outputs; b/db may be null. Each runs
// the first entry of conv.cpp's implementation list (registry.h) that applies: bf16,
// Winograd F(4x4) or F(2x2) (3x3 stride 1, as the setting resolves), direct; per ISA path.
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "common.h"

namespace rc {

void conv2d_forward(const float* x, const float* w, const float* b, float* y, const ConvShape& s);
void conv2d_backward_data(const float* dy, const float* w, float* dx, const ConvShape& s);
void conv2d_backward_weight(const float* x, const float* dy, float* dw, float* db,
                            const ConvShape& s);

// Algorithm for 3x3 stride-1 convolutions, set per pass: `automatic` ("auto", the default)
// picks the fastest choice that keeps float32 precision, `fast` the fastest measured
// (F(4x4) Winograd, which rounds more), `direct` never uses Winograd, `winograd2` and
// `winograd4` force F(2x2, 3x3) or F(4x4, 3x3) on every 3x3 stride-1 call of a SIMD path.
// Process-wide; RESNET_CPP_CONV_ALGO sets it at load ("fast", or
// "forward=fast,backward_data=direct,...").
enum class ConvAlgo : int { automatic = 0, fast = 1, direct = 2, winograd2 = 3, winograd4 = 4 };
enum class ConvPass : int { forward = 0, backward_data = 1, backward_weight = 2 };
using ConvAlgoSetting = std::array<ConvAlgo, 3>;  // indexed by ConvPass
const char* conv_algo_name(ConvAlgo a);
ConvAlgoSetting parse_conv_algo(const std::string& spec);  // throws std::invalid_argument
std::string conv_algo_spec(const ConvAlgoSetting& a);      // inverse of parse_conv_algo
void set_conv_algo(const ConvAlgoSetting& a);
ConvAlgoSetting conv_algo();

// Operand precision of every convolution (conv_bf16.cpp). fp32 (default); or bf16: inputs,
// weights and output gradients rounded to bf16 (nearest even) as the kernels read them,
// products summed in fp32, outputs fp32; direct convolution only. Process-wide;
// RESNET_CPP_PRECISION sets it at load. bf16 runs only where the active path has a
// bf16 dot product (avx512_bf16); elsewhere the convolutions stay fp32.
enum class ConvPrecision : int { fp32 = 0, bf16 = 1 };
const char* conv_precision_name(ConvPrecision p);
ConvPrecision parse_conv_precision(const std::string& name);  // throws std::invalid_argument
void set_conv_precision(ConvPrecision p);
ConvPrecision conv_precision();
bool conv_runs_bf16();  // bf16 asked for and the active path can run it
// y[i] = x[i] rounded to bf16 (nearest even; NaN kept quiet; denormals to signed zero, as
// vcvtneps2bf16 does) and widened back to float, on the active path's instruction or in C++.
void round_to_bf16(const float* x, float* y, int64_t n);

}  // namespace rc
