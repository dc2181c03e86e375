// pool_avx512.cpp: the shared pooling bodies (pool_body.h) compiled with AVX512 flags.
#include <cstdint>

#include "dispatch.h"
#include "pool.h"
#include "simd/pool_kernels.h"

namespace rc::avx512 {
#include "simd/pool_body.h"
}  // namespace rc::avx512
