// pool_avx2.cpp: the shared pooling bodies (pool_body.h) compiled with AVX2 flags.
#include <cstdint>

#include "dispatch.h"
#include "pool.h"
#include "simd/pool_kernels.h"

namespace rc::avx2 {
#include "simd/pool_body.h"
}  // namespace rc::avx2
