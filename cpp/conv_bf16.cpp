// conv_bf16.cpp: the convolution precision setting (fp32 or bf16 operands) and bf16
// rounding. The bf16 kernels live in simd/conv_avx512_bf16.cpp; conv.cpp's list runs them
// when bf16 is asked for and the active path has them.
#include <atomic>
#include <cstring>
#include <stdexcept>

#include "conv.h"
#include "dispatch.h"
#include "registry.h"
#include "simd/kernels.h"

namespace rc {
namespace {

std::atomic<int> g_precision{
    int(env_setting("RESNET_CPP_PRECISION", ConvPrecision::fp32, parse_conv_precision))};

// Round-to-nearest-even to the top 16 bits, as vcvtneps2bf16 does (Intel SDM): denormals
// become signed zero, NaNs stay NaN with the quiet bit set, overflow rounds to infinity.
uint32_t bf16_bits(uint32_t u) {
    const uint32_t exp = (u >> 23) & 0xFF, mant = u & 0x7FFFFF;
    if (exp == 0) return (u >> 16) & 0x8000;
    if (exp == 0xFF && mant) return (u >> 16) | 0x40;
    return (u + 0x7FFF + ((u >> 16) & 1)) >> 16;
}

}  // namespace

namespace scalar {
void round_to_bf16(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        uint32_t u;
        std::memcpy(&u, x + i, 4);
        u = bf16_bits(u) << 16;
        std::memcpy(y + i, &u, 4);
    }
}
}  // namespace scalar

constexpr Impl<AnyCall, decltype(&scalar::round_to_bf16)> kRound[] = {
    RC_IF_AVX512_BF16({"rne", Isa::avx512_bf16, nullptr, avx512_bf16::round_to_bf16})
    {"rne", Isa::scalar, nullptr, scalar::round_to_bf16},
};

const char* conv_precision_name(ConvPrecision p) { return p == ConvPrecision::bf16 ? "bf16" : "fp32"; }

ConvPrecision parse_conv_precision(const std::string& name) {
    if (name == "fp32") return ConvPrecision::fp32;
    if (name == "bf16") return ConvPrecision::bf16;
    throw std::invalid_argument("precision: expected 'fp32' or 'bf16', got '" + name + "'");
}

void set_conv_precision(ConvPrecision p) { g_precision.store(int(p), std::memory_order_relaxed); }

ConvPrecision conv_precision() { return ConvPrecision(g_precision.load(std::memory_order_relaxed)); }

bool conv_runs_bf16() {
    return conv_precision() == ConvPrecision::bf16 && int(active_path()) >= int(Isa::avx512_bf16);
}

void round_to_bf16(const float* x, float* y, int64_t n) { pick(kRound).fn(x, y, n); }

std::vector<OpImpls> conv_bf16_ops() { return any_call_ops(kRound, {"round_to_bf16"}); }

}  // namespace rc
