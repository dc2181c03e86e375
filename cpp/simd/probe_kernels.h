// probe_kernels.h: entry points of the FMA peak probe per ISA (see cpp/probe.cpp).
#pragma once
#include <cstdint>

namespace rc {
#ifdef RESNET_CPP_HAVE_AVX2
namespace avx2 { float fma_chains(int64_t iters); }
#endif
#ifdef RESNET_CPP_HAVE_AVX512
namespace avx512 { float fma_chains(int64_t iters); }
#endif
}  // namespace rc
