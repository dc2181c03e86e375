// optim_avx2.cpp: the shared optimizer bodies (optim_body.h) compiled with AVX2 flags.
#include <cmath>
#include <cstdint>

#include "dispatch.h"
#include "simd/kernels.h"

namespace rc::avx2 {
#include "simd/optim_body.h"
}  // namespace rc::avx2
