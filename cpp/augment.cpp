// augment.cpp: random crop (with zero padding) and horizontal flip, in C++ because a
// per-image Python loop would dominate a CIFAR epoch. Pure copies: memory-bound, no SIMD
// needed (rows are memcpy'd when not flipped). Threads split images.
#include "augment.h"

#include <cstring>

#include "dispatch.h"
#include "registry.h"
#include "simd/kernels.h"

namespace rc {
namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

// splitmix64's output function: a bijective 64-bit mixer.
inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// One (H,W,C) image: output row h reads input row h+dy, column w reads w+dx (or, flipped,
// output w reads crop column W-1-w). Out-of-range rows/columns are zeros.
void crop_nhwc(float* y, const float* x, int64_t C, int64_t H, int64_t W, int64_t dy,
               int64_t dx, bool flipped) {
    const size_t px = (size_t)C * sizeof(float);
    for (int64_t h = 0; h < H; ++h) {
        float* yr = y + h * W * C;
        const int64_t sh = h + dy;
        if (sh < 0 || sh >= H) {
            std::memset(yr, 0, px * (size_t)W);
            continue;
        }
        const float* xr = x + sh * W * C;
        if (!flipped) {
            const int64_t w0 = imax(0, -dx), w1 = imin(W, W - dx);  // valid output columns
            if (w1 <= w0) {
                std::memset(yr, 0, px * (size_t)W);
                continue;
            }
            std::memset(yr, 0, px * (size_t)w0);
            std::memcpy(yr + w0 * C, xr + (w0 + dx) * C, px * (size_t)(w1 - w0));
            std::memset(yr + w1 * C, 0, px * (size_t)(W - w1));
        } else {
            for (int64_t w = 0; w < W; ++w) {
                const int64_t sw = W - 1 - w + dx;
                float* yp = yr + w * C;
                if (sw < 0 || sw >= W) {
                    for (int64_t c = 0; c < C; ++c) yp[c] = 0.0f;
                } else {
                    const float* xp = xr + sw * C;
                    for (int64_t c = 0; c < C; ++c) yp[c] = xp[c];
                }
            }
        }
    }
}

// One (C,H,W) image: the same map applied to each channel plane.
void crop_nchw(float* y, const float* x, int64_t C, int64_t H, int64_t W, int64_t dy,
               int64_t dx, bool flipped) {
    for (int64_t c = 0; c < C; ++c)
        for (int64_t h = 0; h < H; ++h) {
            float* yr = y + (c * H + h) * W;
            const int64_t sh = h + dy;
            if (sh < 0 || sh >= H) {
                for (int64_t w = 0; w < W; ++w) yr[w] = 0.0f;
                continue;
            }
            const float* xr = x + (c * H + sh) * W;
            for (int64_t w = 0; w < W; ++w) {
                const int64_t sw = (flipped ? W - 1 - w : w) + dx;
                yr[w] = (sw >= 0 && sw < W) ? xr[sw] : 0.0f;
            }
        }
}

}  // namespace

namespace scalar {
void random_crop_flip(float* y, const float* x, int64_t N, int64_t C, int64_t H, int64_t W,
                      int64_t padding, bool flip, uint64_t seed, bool channels_last,
                      int64_t first_index) {
    const int64_t img = C * H * W;
#pragma omp parallel for schedule(static) if (N * img >= (1 << 15)) num_threads(rc::num_threads())
    for (int64_t n = 0; n < N; ++n) {
        int64_t oy, ox;
        bool flipped;
        crop_flip_params(seed, first_index + n, padding, flip, &oy, &ox, &flipped);
        // Crop offset (oy, ox) in the padded image = shift (oy - p, ox - p) in the input.
        if (channels_last)
            crop_nhwc(y + n * img, x + n * img, C, H, W, oy - padding, ox - padding, flipped);
        else
            crop_nchw(y + n * img, x + n * img, C, H, W, oy - padding, ox - padding, flipped);
    }
}

}  // namespace scalar

constexpr Impl<AnyCall, decltype(&scalar::random_crop_flip)> kAugment[] = {
    {"crop_flip", Isa::scalar, nullptr, scalar::random_crop_flip},
};

void crop_flip_params(uint64_t seed, int64_t i, int64_t padding, bool flip, int64_t* oy,
                      int64_t* ox, bool* flipped) {
    const uint64_t key = mix64(seed);
    const uint64_t base = (uint64_t)i * 4u;
    const uint64_t r0 = mix64(key + kGolden * (base + 1));
    const uint64_t r1 = mix64(key + kGolden * (base + 2));
    const uint64_t r2 = mix64(key + kGolden * (base + 3));
    const uint64_t span = (uint64_t)(2 * padding + 1);
    *oy = (int64_t)(r0 % span);
    *ox = (int64_t)(r1 % span);
    *flipped = flip && (r2 >> 63);
}

void random_crop_flip(float* y, const float* x, int64_t N, int64_t C, int64_t H, int64_t W,
                      int64_t padding, bool flip, uint64_t seed, bool channels_last,
                      int64_t first_index) {
    pick(kAugment).fn(y, x, N, C, H, W, padding, flip, seed, channels_last, first_index);
}

std::vector<OpImpls> augment_ops() { return any_call_ops(kAugment, {"random_crop_flip"}); }

}  // namespace rc
