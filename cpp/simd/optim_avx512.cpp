// optim_avx512.cpp: the shared optimizer bodies (optim_body.h) compiled with AVX512 flags.
#include <cmath>
#include <cstdint>

#include "dispatch.h"
#include "simd/kernels.h"

namespace rc::avx512 {
#include "simd/optim_body.h"
}  // namespace rc::avx512
