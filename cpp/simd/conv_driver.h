// conv_driver.h: the ISA-independent convolution driver (conv.h's three passes, NHWC
// activations, RSCK weights), compiled once per SIMD translation unit: conv_avx2.cpp,
// conv_avx512.cpp and conv_avx512_bf16.cpp include it (and nothing else does), after their
// micro-kernels, and export its passes as ConvKernels sets (simd/kernels.h).
//
// SIMD design (see benchmarks/NOTES.md for numbers):
// - Forward: every image is copied (per thread) into a zero-padded, channel-blocked,
//   stride-phase-split scratch [C/16][st][st][Hph][Wph][16]. A stride-st conv then reads
//   each phase with unit stride, so one micro-kernel serves every stride: it computes a run
//   of PX consecutive pixels of one output row times NV vectors of 16 output channels,
//   broadcasting one input value per (tap, c) from offset 16*j (an immediate) into NV FMAs.
//   Weights are packed per call into [K block][tap][c][NV*16] so the inner loads are
//   contiguous; the whole reduction stays in registers.
// - Backward-data: split dx by stride phase (h+pad) % st; each phase is a stride-1 conv of
//   zero-padded dy with a sub-kernel rotated 180 degrees and C/K swapped, run through the
//   same engine and micro-kernel (stride 1 is the single-phase case).
// - Backward-weight: per-thread private dW (K padded to 16), register-blocked over
//   (UB consecutive (s,c) entries of a padded NHWC input row) x (NV K vectors), reducing
//   over output pixels; then one reduction over threads in fixed order (deterministic).
// - 3x3 stride-1 layers may run Winograd F(2x2, 3x3) or F(4x4, 3x3) instead
//   (simd/winograd.h), as the algorithm setting resolves per call (cpp/conv.cpp).
// - bf16 (simd/conv_avx512_bf16.cpp): the same forward and backward-data engine with a
//   bf16 scratch (Micro::Elem = uint16_t, rounded to nearest even while it is built) and
//   weights packed in channel pairs [K block][tap][c/2][NV*16][2] for vdpbf16ps.
//
// Everything here sits in an anonymous namespace, so each ISA keeps its own copy; the TU
// supplies `struct Micro` (micro-kernel tables, see conv_avx512.cpp), used by the templates.
// Only translation-unit-local types and templates over them: an inline function or template
// instance shared with other translation units (std::vector<float>, say) could be emitted as
// a weak symbol, and the linker may hand baseline code the copy compiled with wider ISA
// flags. Hence Arr and List below instead of std::vector. The exceptions are std::min and
// std::max on integers, the same scalar instructions under any flags.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "dispatch.h"
#include "simd/kernels.h"

namespace {

using rc::ConvShape;

constexpr int kVec = 16;  // output channels per "vector group" (one zmm, two ymm)

// Owning, zero-initialized array of n elements.
template <class T>
class Arr {
  public:
    Arr() = default;
    explicit Arr(int64_t n) : p_(n > 0 ? new T[n]() : nullptr), n_(n > 0 ? n : 0) {}
    Arr(Arr&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
    Arr& operator=(Arr&& o) noexcept {
        T* p = p_;
        const int64_t n = n_;
        p_ = o.p_, n_ = o.n_;
        o.p_ = p, o.n_ = n;
        return *this;
    }
    Arr(const Arr&) = delete;
    Arr& operator=(const Arr&) = delete;
    ~Arr() { delete[] p_; }
    T* data() { return p_; }
    const T* data() const { return p_; }
    int64_t size() const { return n_; }
    T& operator[](int64_t i) { return p_[i]; }
    const T& operator[](int64_t i) const { return p_[i]; }

  private:
    T* p_ = nullptr;
    int64_t n_ = 0;
};

// Up to `cap` elements (fixed when built; every list here has a known bound), appended in
// order.
template <class T>
class List {
  public:
    explicit List(int64_t cap = 0) : a_(cap) {}
    void push_back(T v) { a_[n_++] = static_cast<T&&>(v); }
    int64_t size() const { return n_; }
    T& operator[](int64_t i) { return a_[i]; }
    const T& operator[](int64_t i) const { return a_[i]; }
    T* begin() { return a_.data(); }
    T* end() { return a_.data() + n_; }
    const T* begin() const { return a_.data(); }
    const T* end() const { return a_.data() + n_; }

  private:
    Arr<T> a_;
    int64_t n_ = 0;
};

// Scratch owned by the calling thread and reused across calls (grow-only, 64-byte aligned):
// allocating hundreds of KiB per call costs more in page faults than a small layer computes.
// Slots are independent buffers of one call; contents are undefined unless zero is set.
// Each Python thread calling a kernel gets its own buffers, so concurrent calls stay safe.
inline float* workspace(int slot, int64_t n, bool zero) {
    struct Buf {
        float* p = nullptr;
        int64_t n = 0;
        ~Buf() { std::free(p); }
    };
    thread_local Buf bufs[4];
    Buf& b = bufs[slot];
    if (b.n < n) {
        std::free(b.p);
        b.p = static_cast<float*>(std::aligned_alloc(64, size_t(n + 15) / 16 * 64));
        b.n = b.p ? n : 0;
        if (!b.p) throw std::bad_alloc();
    }
    if (zero && n > 0) std::memset(b.p, 0, size_t(n) * 4);  // b.p is null while nothing was asked
    return b.p;
}

inline int team_size() {
#ifdef RESNET_CPP_HAVE_OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}
inline int team_rank() {
#ifdef RESNET_CPP_HAVE_OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// Arguments of one forward micro-kernel call: PX pixels of a row x NV groups of 16 outputs.
// E is the scratch and packed-weight element: float, or bf16 bits (uint16_t).
template <class E>
struct FwdArgsT {
    const E* x;            // scratch, channel block 0, at the run's first pixel
    const int64_t* tap;    // ntaps offsets (elements) of each tap inside a channel block
    int64_t ntaps;
    int64_t cin;           // reduction channels
    int64_t plane;         // elements between consecutive 16-channel blocks
    const E* w;            // packed block [ntaps][cin][NV*16] (bf16: [ntaps][cin/2][NV*16][2])
    const float* bias;     // NV*16 floats, or null for zero
    float* y;              // output of the run's first pixel, at the block's first channel
    int64_t ystep;         // floats between consecutive output pixels of the run
    int klast;             // valid lanes of the last group (1..16)
};
using FwdArgs = FwdArgsT<float>;

// Input channels per packed weight row: bf16 packs channel pairs (an odd count gets a zero
// partner), float packs single channels.
template <class E>
constexpr int64_t packed_cin(int64_t cin) {
    return sizeof(E) == 2 ? (cin + 1) / 2 * 2 : cin;
}

// The workspace slot as an array of n elements of E (float or bf16 bits).
template <class E>
E* workspace_as(int slot, int64_t n, bool zero) {
    return reinterpret_cast<E*>(workspace(slot, (n * int64_t(sizeof(E)) + 3) / 4, zero));
}

// Arguments of one backward-weight micro-kernel call: UB (s,c) rows x NV groups of 16.
struct BwwArgs {
    const float* x;        // padded NHWC row (p0*st + r) at column 0, offset by u0
    int64_t xrow;          // floats between the input rows of consecutive output rows
    int64_t xpix;          // floats between the inputs of consecutive output pixels (st*C)
    const float* dy;       // dy at output pixel (p0, 0), offset by the group's first channel
    int64_t rows, cols;    // output rows in this band, Q
    int64_t kstride;       // K (dy pixel stride)
    float* dw;             // private dW at row u0, group offset; accumulated into
    int64_t dwstride;      // padded K
    int klast;
};

// Groups of 16 output channels processed together.
struct KBlock {
    int v0, nv;
};

inline List<KBlock> plan_kblocks(int64_t kout, int maxnv) {
    int kv = int((kout + kVec - 1) / kVec);
    int nblk = (kv + maxnv - 1) / maxnv;
    List<KBlock> b(nblk);
    int base = kv / nblk, extra = kv % nblk;  // balanced: sizes differ by at most one
    for (int i = 0, v = 0; i < nblk; ++i) {
        int nv = base + (i < extra);
        b.push_back({v, nv});
        v += nv;
    }
    return b;
}

// Packs w[toff[t] + ci*s_ci + co*s_co] into dst [block][tap][ci][nv*16] (dst is zeroed, so
// lanes co >= kout stay zero). Either co (forward, RSCK) or ci (backward-data: C and K
// swapped) is contiguous in w; the loops read w contiguously in both cases.
void pack_weights(float* dst, const List<KBlock>& blocks, int64_t ntaps, int64_t cin,
                  int64_t kout, const float* w, const int64_t* toff, int64_t s_ci,
                  int64_t s_co) {
    for (const KBlock& b : blocks) {
        const int64_t width = int64_t(b.nv) * kVec, c0 = int64_t(b.v0) * kVec;
        const int64_t ncol = std::min(width, kout - c0);
        for (int64_t t = 0; t < ntaps; ++t) {
            const float* wt = w + toff[t] + c0 * s_co;
            float* d = dst + c0 * ntaps * cin + t * cin * width;
            if (s_co == 1) {
                for (int64_t ci = 0; ci < cin; ++ci)
                    std::memcpy(d + ci * width, wt + ci * s_ci, ncol * 4);
            } else {
                // ci contiguous in w: 64-channel slabs keep the written lines in L1.
                for (int64_t ci0 = 0; ci0 < cin; ci0 += 64) {
                    const int64_t ci1 = std::min(cin, ci0 + 64);
                    for (int64_t j = 0; j < ncol; ++j)
                        for (int64_t ci = ci0; ci < ci1; ++ci)
                            d[ci * width + j] = wt[j * s_co + ci * s_ci];
                }
            }
        }
    }
}

// Packs weights as pack_weights does, into the layout Mk's forward kernel reads: as is for
// float; for bf16 into a float staging slot, then rounded and interleaved in channel pairs.
template <class Mk>
void pack_weights_for(typename Mk::Elem* dst, const List<KBlock>& blocks, int64_t ntaps,
                      int64_t cin, int64_t kout, const float* w, const int64_t* toff,
                      int64_t s_ci, int64_t s_co) {
    if constexpr (sizeof(typename Mk::Elem) == 4) {
        pack_weights(dst, blocks, ntaps, cin, kout, w, toff, s_ci, s_co);
    } else {
        int64_t width_all = 0;
        for (const KBlock& b : blocks) width_all += int64_t(b.nv) * kVec;
        float* f = workspace(1, width_all * ntaps * cin, true);
        pack_weights(f, blocks, ntaps, cin, kout, w, toff, s_ci, s_co);
        const int64_t cp = packed_cin<typename Mk::Elem>(cin);
        for (const KBlock& b : blocks) {
            const int64_t width = int64_t(b.nv) * kVec, c0 = int64_t(b.v0) * kVec;
            for (int64_t t = 0; t < ntaps; ++t) {
                const float* src = f + c0 * ntaps * cin + t * cin * width;
                typename Mk::Elem* d = dst + c0 * ntaps * cp + t * cp * width;
                for (int64_t ci = 0; ci < cin; ci += 2)
                    for (int64_t l = 0; l < width; l += kVec)
                        Mk::pair16(d + (ci * width + 2 * l), src + ci * width + l,
                                   ci + 1 < cin ? src + (ci + 1) * width + l : nullptr, kVec);
            }
        }
    }
}

// Copies rows i in [i0, i1) of image x (H,W,C) into the blocked scratch
// [C/16][st][st][Hph][Wph][16]: element (cb, ph, pw, i, j, l) is
// x[i*st + ph - top][j*st + pw - left][16*cb + l]. Only pixels inside the image are
// written: the caller zeroes the scratch once, and padding never changes.
// Lanes past C in the last block are never read; phases with used[ph*st + pw] == 0 (read by
// no tap) are skipped.
template <class Mk>
void build_scratch(const float* x, int64_t H, int64_t W, int64_t C, int64_t st, int64_t top,
                   int64_t left, int64_t Hph, int64_t Wph, int64_t plane, const char* used,
                   int64_t i0, int64_t i1, typename Mk::Elem* out) {
    const int64_t nblk = (C + kVec - 1) / kVec, rowlen = Wph * kVec;
    for (int64_t ph = 0; ph < st; ++ph)
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t h = i * st + ph - top;
            if (h < 0 || h >= H) continue;
            for (int64_t pw = 0; pw < st; ++pw) {
                if (!used[ph * st + pw]) continue;
                // Columns j with 0 <= j*st + pw - left < W.
                const int64_t jlo = std::min(Wph, (left - pw + st - 1) / st);
                const int64_t jhi = W - 1 + left - pw < 0
                                        ? jlo
                                        : std::max(jlo, std::min(Wph, (W - 1 + left - pw) / st + 1));
                typename Mk::Elem* row = out + ((ph * st + pw) * Hph + i) * rowlen + jlo * kVec;
                const float* src = x + (h * W + jlo * st + pw - left) * C;
                const int64_t step = st * C;
                for (int64_t cb = 0; cb < nblk; ++cb) {
                    const int64_t n = std::min<int64_t>(kVec, C - cb * kVec);
                    typename Mk::Elem* d = row + cb * plane;
                    const float* sp = src + cb * kVec;
                    if (n == kVec && sizeof(*d) == 4)
                        for (int64_t j = jlo; j < jhi; ++j, d += kVec, sp += step)
                            std::memcpy(d, sp, kVec * 4);
                    else  // C tail or bf16: a masked load (not a memcpy call per pixel)
                        for (int64_t j = jlo; j < jhi; ++j, d += kVec, sp += step)
                            Mk::copy_tail(d, sp, int(n));
                }
            }
        }
}

// One stride-1 convolution over a scratch grid of row width Wph. Output pixel (row, col) of
// the phase reads scratch pixel base + row*Wph + col (plus the tap offsets) and goes to out
// pixel (h0 + row*hstep, w0 + col*wstep). E: as in FwdArgsT.
template <class E>
struct Phase {
    Arr<int64_t> tap;          // offsets (elements) of each tap from the pixel's scratch slot
    int64_t base;              // scratch pixel read by output pixel (0, 0) at tap offset 0
    E* wpk = nullptr;          // packed weights, all K blocks (in the call's workspace)
    int64_t rows, ncols;       // output grid
    int64_t h0, w0;
    int64_t ah = 0, aw = 0, nsw = 0;  // backward-data: stride phase, taps per kernel row
};

struct Engine {
    int64_t N, H, W, Cin, st, top, left, Hph, Wph;
    int64_t plane;        // floats per 16-channel block: st*st*Hph*Wph*16
    int64_t scratch_len;
    Arr<char> used;       // st*st: phase read by some tap
    int64_t Hout, Wout, Cout, hstep, wstep;
    List<KBlock> blocks;
    const float* bias;    // packed, KV*16, or null
};

// Runs every phase of every image. A micro-kernel call covers a run of up to PX pixels of
// one output row (rows are split into balanced runs), so no padding column is computed.
template <class Mk>
void run_engine(const Engine& e, const List<Phase<typename Mk::Elem>>& phases,
                const float* in, float* out) {
    using E = typename Mk::Elem;
    // Work items: (image, phase, band of rows). Bands give threads work when N is small and
    // keep a band's input rows cache-resident for big images; a phase has at most one band
    // per row.
    struct Item { int ph; int64_t r0, r1; };
    int64_t most = 0;
    for (const Phase<E>& ph : phases) most += std::max<int64_t>(0, ph.rows);
    List<Item> per_image(most);
    const int T = rc::num_threads();
    const int64_t want = e.N >= T ? 1 : (T + e.N - 1) / e.N;
    int64_t calls = 0;  // micro-kernel calls per image
    for (int p = 0; p < int(phases.size()); ++p) {
        const Phase<E>& ph = phases[p];
        if (ph.rows <= 0 || ph.ncols <= 0) continue;
        int64_t row_bytes = e.Wph * e.Cin * int64_t(sizeof(E)) * e.st;
        int64_t rows_per_band = std::max<int64_t>(4, (256 << 10) / std::max<int64_t>(1, row_bytes));
        int64_t nb = std::min(ph.rows, std::max(want, (ph.rows + rows_per_band - 1) / rows_per_band));
        for (int64_t b = 0; b < nb; ++b) per_image.push_back({p, ph.rows * b / nb, ph.rows * (b + 1) / nb});
        for (const KBlock& kb : e.blocks)
            calls += ph.rows * ((ph.ncols + Mk::fwd_px(kb.nv) - 1) / Mk::fwd_px(kb.nv));
    }
    const int64_t per = int64_t(per_image.size()), total = e.N * per;
    // The next image is prefetched (to L2) a few lines per micro-kernel call, so its copy into
    // the scratch does not stall on memory.
    const int64_t image = e.H * e.W * e.Cin;
    const int64_t pf_lines = (image / 16 + calls - 1) / std::max<int64_t>(1, calls) + 1;

    // Scratch rows read by a band: from its first output row (plus the phase's base row) to
    // its last plus the largest tap row offset. Building them per band, just before use,
    // keeps them cache-hot for big images.
    const int64_t pp = e.Hph * e.Wph;
    const int64_t nph = int64_t(phases.size());
    Arr<int64_t> row0(nph), halo(nph);
    for (int64_t p = 0; p < nph; ++p) {
        row0[p] = phases[p].base / e.Wph;
        for (int64_t t = 0; t < phases[p].tap.size(); ++t)
            halo[p] = std::max(halo[p], (phases[p].tap.data()[t] / kVec % pp) / e.Wph);
    }
    // Per-thread scratch (zeroed: padding stays zero) and built-row flags, allocated here so
    // that a failed allocation throws to the caller instead of terminating inside the
    // parallel region.
    E* scratch_all = workspace_as<E>(2, T * e.scratch_len, true);
    Arr<char> built_all(T * e.Hph);

#pragma omp parallel num_threads(T)
    {
        const int nt = team_size(), t = team_rank();
        const int64_t i0 = total * t / nt, i1 = total * (t + 1) / nt;
        if (i0 < i1) {
            E* scratch = scratch_all + t * e.scratch_len;
            char* built = built_all.data() + t * e.Hph;
            int64_t have = -1;
            const float *pf = nullptr, *pf_end = nullptr;
            for (int64_t it = i0; it < i1; ++it) {
                const int64_t n = it / per;
                const Item& item = per_image[it % per];
                if (n != have) {
                    std::memset(built, 0, e.Hph);
                    have = n;
                    pf = n + 1 < e.N ? in + (n + 1) * image : nullptr;
                    pf_end = pf ? pf + image : nullptr;
                }
                const int64_t lo = row0[item.ph] + item.r0;
                const int64_t hi = std::min(e.Hph, row0[item.ph] + item.r1 + halo[item.ph]);
                for (int64_t i = lo; i < hi;) {
                    if (built[i]) { ++i; continue; }
                    int64_t j = i;
                    while (j < hi && !built[j]) built[j++] = 1;
                    build_scratch<Mk>(in + n * image, e.H, e.W, e.Cin, e.st, e.top, e.left,
                                      e.Hph, e.Wph, e.plane, e.used.data(), i, j, scratch);
                    i = j;
                }
                const Phase<E>& ph = phases[item.ph];
                float* outn = out + n * e.Hout * e.Wout * e.Cout;
                const int64_t ystep = e.wstep * e.Cout;
                for (const KBlock& kb : e.blocks) {
                    const int pxmax = Mk::fwd_px(kb.nv);
                    // Balanced runs: lengths differ by at most one pixel.
                    const int64_t nrun = (ph.ncols + pxmax - 1) / pxmax;
                    const int64_t base = ph.ncols / nrun, extra = ph.ncols % nrun;
                    FwdArgsT<E> a;
                    a.tap = ph.tap.data();
                    a.ntaps = ph.tap.size();
                    a.cin = e.Cin;
                    a.plane = e.plane;
                    a.w = ph.wpk + int64_t(kb.v0) * kVec * a.ntaps * packed_cin<E>(e.Cin);
                    a.bias = e.bias ? e.bias + kb.v0 * kVec : nullptr;
                    a.ystep = ystep;
                    const int64_t kend = std::min<int64_t>(e.Cout, int64_t(kb.v0 + kb.nv) * kVec);
                    a.klast = int(kend - int64_t(kb.v0 + kb.nv - 1) * kVec);
                    for (int64_t row = item.r0; row < item.r1; ++row) {
                        float* yrow = outn + ((ph.h0 + row * e.hstep) * e.Wout + ph.w0) * e.Cout +
                                      kb.v0 * kVec;
                        const E* xrow = scratch + (ph.base + row * e.Wph) * kVec;
                        for (int64_t i = 0, col = 0; i < nrun; ++i) {
                            const int cnt = int(base + (i < extra));
                            a.y = yrow + col * ystep;
                            a.x = xrow + col * kVec;
                            Mk::fwd(kb.nv, cnt)(a);
                            col += cnt;
                            for (int64_t l = 0; l < pf_lines && pf < pf_end; ++l, pf += 16)
                                _mm_prefetch(reinterpret_cast<const char*>(pf), _MM_HINT_T1);
                        }
                    }
                }
            }
        }
    }
}

template <class Mk>
void forward(const float* x, const float* w, const float* b, float* y, const ConvShape& s) {
    Engine e;
    int64_t st = s.stride;
    e.N = s.N; e.H = s.H; e.W = s.W; e.Cin = s.C; e.st = st; e.top = s.pad; e.left = s.pad;
    e.Hph = (s.H + 2 * s.pad + st - 1) / st;
    e.Wph = (s.W + 2 * s.pad + st - 1) / st;
    e.plane = st * st * e.Hph * e.Wph * kVec;
    e.scratch_len = e.plane * ((s.C + kVec - 1) / kVec);
    e.used = Arr<char>(st * st);
    for (int64_t r = 0; r < std::min(s.R, st); ++r)
        for (int64_t q = 0; q < std::min(s.S, st); ++q) e.used[r * st + q] = 1;
    e.Hout = s.P; e.Wout = s.Q; e.Cout = s.K; e.hstep = 1; e.wstep = 1;
    e.blocks = plan_kblocks(s.K, Mk::kMaxNV);
    int64_t kv = (s.K + kVec - 1) / kVec;
    Arr<float> bias(b ? kv * kVec : 0);
    if (b) std::memcpy(bias.data(), b, s.K * 4);
    e.bias = b ? bias.data() : nullptr;

    using E = typename Mk::Elem;
    List<Phase<E>> phases(1);
    phases.push_back(Phase<E>());
    Phase<E>& ph = phases[0];
    int64_t pp = e.Hph * e.Wph;
    ph.tap = Arr<int64_t>(s.R * s.S);
    for (int64_t r = 0; r < s.R; ++r)
        for (int64_t q = 0; q < s.S; ++q)
            ph.tap[r * s.S + q] = (((r % st) * st + q % st) * pp + (r / st) * e.Wph + q / st) * kVec;
    ph.base = 0;
    ph.rows = s.P; ph.ncols = s.Q; ph.h0 = 0; ph.w0 = 0;
    ph.wpk = workspace_as<E>(0, kv * kVec * s.R * s.S * packed_cin<E>(s.C), true);
    int64_t C = s.C, K = s.K;
    Arr<int64_t> toff(s.R * s.S);
    for (int64_t t = 0; t < s.R * s.S; ++t) toff[t] = t * C * K;
    pack_weights_for<Mk>(ph.wpk, e.blocks, s.R * s.S, C, K, w, toff.data(), K, 1);
    run_engine<Mk>(e, phases, x, y);
}

template <class Mk>
void backward_data(const float* dy, const float* w, float* dx, const ConvShape& s) {
    int64_t st = s.stride, R = s.R, S = s.S, C = s.C, K = s.K, pad = s.pad;
    Engine e;
    // Phase a: dx rows h = st*i + a - pad take taps r = a + st*t from dy rows p = i - t.
    int64_t Rt = (R + st - 1) / st, St = (S + st - 1) / st;
    int64_t top = Rt - 1, left = St - 1;
    int64_t imax = (s.H - 1 + pad) / st, jmax = (s.W - 1 + pad) / st;
    int64_t Hs = top + std::max(s.P, imax + 1), Ws = left + std::max(s.Q, jmax + 1);
    e.N = s.N; e.H = s.P; e.W = s.Q; e.Cin = K; e.st = 1; e.top = top; e.left = left;
    e.Hph = Hs; e.Wph = Ws; e.plane = Hs * Ws * kVec;
    e.scratch_len = e.plane * ((K + kVec - 1) / kVec);
    e.used = Arr<char>(1);
    e.used[0] = 1;
    e.Hout = s.H; e.Wout = s.W; e.Cout = C; e.hstep = st; e.wstep = st;
    e.blocks = plan_kblocks(C, Mk::kMaxNV);
    e.bias = nullptr;
    int64_t cv = (C + kVec - 1) / kVec;

    using E = typename Mk::Elem;
    List<Phase<E>> phases(st * st);
    for (int64_t ah = 0; ah < st; ++ah)
        for (int64_t aw = 0; aw < st; ++aw) {
            Phase<E> ph;
            int64_t i0 = (pad - ah + st - 1) / st, j0 = (pad - aw + st - 1) / st;
            if (pad - ah < 0) i0 = 0;
            if (pad - aw < 0) j0 = 0;
            int64_t i1 = (s.H - 1 + pad - ah) / st, j1 = (s.W - 1 + pad - aw) / st;
            if (s.H - 1 + pad - ah < 0 || s.W - 1 + pad - aw < 0) continue;
            ph.rows = i1 - i0 + 1; ph.ncols = j1 - j0 + 1;
            if (ph.rows <= 0 || ph.ncols <= 0) continue;
            ph.h0 = st * i0 + ah - pad; ph.w0 = st * j0 + aw - pad;
            ph.base = i0 * Ws + j0;
            // Kernel rows ah, ah+st, ... and columns aw, aw+st, ... belong to this phase; tap
            // (th, tw) reads dy at (i - th, j - tw).
            int64_t nrh = ah < R ? (R - ah + st - 1) / st : 0;
            int64_t nsw = aw < S ? (S - aw + st - 1) / st : 0;
            ph.ah = ah; ph.aw = aw; ph.nsw = nsw;
            ph.tap = Arr<int64_t>(nrh * nsw);
            for (int64_t th = 0; th < nrh; ++th)
                for (int64_t tw = 0; tw < nsw; ++tw)
                    ph.tap[th * nsw + tw] = ((top - th) * Ws + (left - tw)) * kVec;
            phases.push_back(std::move(ph));
        }
    // Packed weights of every phase, one after the other in one zeroed workspace.
    const int64_t kp = packed_cin<E>(K);
    int64_t total = 0;
    for (const Phase<E>& ph : phases) total += cv * kVec * ph.tap.size() * kp;
    E* wpk = workspace_as<E>(0, std::max<int64_t>(1, total), true);
    for (Phase<E>& ph : phases) {
        // Tap (th, tw) is kernel entry (ah + st*th, aw + st*tw); input channel ci = k, output
        // channel co = c.
        const int64_t ntap = ph.tap.size(), nsw = ph.nsw;
        Arr<int64_t> toff(ntap);
        for (int64_t t = 0; t < ntap; ++t)
            toff[t] = ((ph.ah + st * (t / nsw)) * S + ph.aw + st * (t % nsw)) * C * K;
        ph.wpk = wpk;
        pack_weights_for<Mk>(wpk, e.blocks, ntap, K, C, w, toff.data(), 1, K);
        wpk += cv * kVec * ntap * kp;
    }
    run_engine<Mk>(e, phases, dy, dx);
}

// out[k] += sum_i d[i*K + k] for i < rows: 16 columns at a time in a register accumulator
// (a plain loop would carry each out[k] through memory from one row to the next).
inline void sum_rows(const float* d, int64_t rows, int64_t K, float* out) {
    for (int64_t k0 = 0; k0 < K; k0 += kVec) {
        float acc[kVec] = {};
        const float* p = d + k0;
        if (K - k0 >= kVec) {
            for (int64_t i = 0; i < rows; ++i, p += K)
                for (int l = 0; l < kVec; ++l) acc[l] += p[l];
        } else {
            for (int64_t i = 0; i < rows; ++i, p += K)
                for (int64_t l = 0; l < K - k0; ++l) acc[l] += p[l];
        }
        for (int64_t l = 0; l < std::min<int64_t>(kVec, K - k0); ++l) out[k0 + l] += acc[l];
    }
}

// Thread t of nt writes its share of the rows of dw (dw_rows rows of K) and db (K, or null)
// as the sum of the `used` private copies (priv_len floats apart; rows of Kp, db's last).
// Call it after a barrier.
inline void reduce_dw(const float* priv, int64_t priv_len, int used, int64_t dw_rows, int64_t K,
                      int64_t Kp, float* dw, float* db, int t, int nt) {
    int64_t rows = dw_rows + (db ? 1 : 0);
    int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
    for (int64_t i = r0; i < r1; ++i)
        rc::reduce_private(priv + i * Kp, priv_len, used, K, i < dw_rows ? dw + i * K : db);
}

template <class Mk>
void backward_weight(const float* x, const float* dy, float* dw, float* db, const ConvShape& s) {
    int64_t st = s.stride, R = s.R, S = s.S, C = s.C, K = s.K, pad = s.pad;
    int64_t P = s.P, Q = s.Q, H = s.H, W = s.W;
    int64_t kv = (K + kVec - 1) / kVec, Kp = kv * kVec;
    int64_t U = S * C;  // one kernel row's (s, c) entries are contiguous in a padded row
    int64_t Hp = H + 2 * pad, Wp = W + 2 * pad;
    int64_t priv_len = R * U * Kp + Kp;
    const List<KBlock> blocks = plan_kblocks(K, Mk::kMaxNV);
    int T = rc::num_threads();
    float* priv = workspace(3, T * priv_len, true);
    // Per-thread zero-padded copy of one image (padding zeroed once; images fill the inside).
    const int64_t pad_len = pad ? (Hp * Wp * C + 15) / 16 * 16 : 0;
    float* padded = workspace(2, T * pad_len, true);
    // Output rows per band: a band's dy (and x rows) stay in L2 across the R * blocks sweeps.
    int64_t band = std::max<int64_t>(1, (256 << 10) / (Q * K * 4));
    int used = 1;
    // Prefetch (to L2) the next image's x and dy a few lines per micro-kernel call.
    int64_t calls = 0;
    for (const KBlock& kb : blocks) calls += (U + Mk::bww_ub(kb.nv) - 1) / Mk::bww_ub(kb.nv);
    calls *= R * ((P + band - 1) / band);
    const int64_t xlines = (H * W * C + 15) / 16, dylines = (P * Q * K + 15) / 16;
    const int64_t pf_x = (xlines + calls - 1) / calls + 1, pf_dy = (dylines + calls - 1) / calls + 1;

#pragma omp parallel num_threads(T)
    {
        int nt = team_size(), t = team_rank();
#pragma omp single
        used = nt;
        float* mine = priv + t * priv_len;
        int64_t n0 = s.N * t / nt, n1 = s.N * (t + 1) / nt;
        float* scratch = padded + t * pad_len;
        for (int64_t n = n0; n < n1; ++n) {
            const float* xn = x + n * H * W * C;
            const float* img = xn;
            const float* pfx = n + 1 < n1 ? xn + H * W * C : nullptr;
            const float* pfx_end = pfx ? pfx + H * W * C : nullptr;
            const float* pfd = n + 1 < n1 ? dy + (n + 1) * P * Q * K : nullptr;
            const float* pfd_end = pfd ? pfd + P * Q * K : nullptr;
            if (pad) {
                for (int64_t h = 0; h < H; ++h)
                    std::memcpy(scratch + ((h + pad) * Wp + pad) * C, xn + h * W * C, W * C * 4);
                img = scratch;
            }
            const float* dyn = dy + n * P * Q * K;
            for (int64_t p0 = 0; p0 < P; p0 += band) {
                BwwArgs a;
                a.rows = std::min(band, P - p0);
                a.cols = Q;
                a.xrow = st * Wp * C;
                a.xpix = st * C;
                a.kstride = K;
                a.dwstride = Kp;
                for (int64_t r = 0; r < R; ++r)
                    for (const KBlock& kb : blocks) {
                        int ubmax = Mk::bww_ub(kb.nv);
                        int64_t nub = (U + ubmax - 1) / ubmax, ub = (U + nub - 1) / nub;
                        int64_t kend = std::min<int64_t>(K, int64_t(kb.v0 + kb.nv) * kVec);
                        a.klast = int(kend - int64_t(kb.v0 + kb.nv - 1) * kVec);
                        a.dy = dyn + p0 * Q * K + kb.v0 * kVec;
                        for (int64_t u0 = 0; u0 < U; u0 += ub) {
                            int cnt = int(std::min(ub, U - u0));
                            a.x = img + (p0 * st + r) * Wp * C + u0;
                            a.dw = mine + (r * U + u0) * Kp + kb.v0 * kVec;
                            Mk::bww(kb.nv, cnt)(a);
                            for (int64_t l = 0; l < pf_x && pfx < pfx_end; ++l, pfx += 16)
                                _mm_prefetch(reinterpret_cast<const char*>(pfx), _MM_HINT_T1);
                            for (int64_t l = 0; l < pf_dy && pfd < pfd_end; ++l, pfd += 16)
                                _mm_prefetch(reinterpret_cast<const char*>(pfd), _MM_HINT_T1);
                        }
                    }
            }
            if (db) sum_rows(dyn, P * Q, K, mine + R * U * Kp);
        }
#pragma omp barrier
        reduce_dw(priv, priv_len, used, R * U, K, Kp, dw, db, t, nt);
    }
}

// The three passes as a ConvKernels set.
template <class Mk>
constexpr rc::ConvKernels direct_kernels = {forward<Mk>, backward_data<Mk>, backward_weight<Mk>};

}  // namespace
