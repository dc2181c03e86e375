// probe.h: FP32 FMA peak probe (benchmarks report % of this measured peak).
#pragma once
#include <cstdint>

namespace rc {
// Runs `iters` iterations of independent FMA chains on every thread of the active ISA path;
// returns the achieved GFLOP/s summed over threads.
double fma_peak_gflops(int64_t iters);
}  // namespace rc
