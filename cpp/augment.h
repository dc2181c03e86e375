// augment.h: training-time data augmentation (cpp/augment.cpp).
#pragma once
#include <cstdint>

namespace rc {

// Per image i of x (N,C,H,W) or (N,H,W,C) (channels_last): zero-pad by `padding` on each
// side, take the H x W crop at offset (oy, ox) in [0, 2*padding]^2, and if `flip`, mirror it
// horizontally with probability 1/2. Writes y (same shape as x; must not overlap x).
// Image i's choices come only from (seed, first_index + i) via crop_flip_params, so the
// output is the same for any thread count and reproducible, and a batch split into parts
// (first_index = the part's offset in the batch) gets the choices of the whole.
void random_crop_flip(float* y, const float* x, int64_t N, int64_t C, int64_t H, int64_t W,
                      int64_t padding, bool flip, uint64_t seed, bool channels_last,
                      int64_t first_index);

// The random choices of image i: counter-based splitmix64, r_j = mix(mix(seed) + G*(4i+j+1))
// with G = 0x9E3779B97F4A7C15; oy = r_0 mod (2p+1), ox = r_1 mod (2p+1), flipped = top
// bit of r_2 (and flip requested).
void crop_flip_params(uint64_t seed, int64_t i, int64_t padding, bool flip, int64_t* oy,
                      int64_t* ox, bool* flipped);

}  // namespace rc
