// dispatch.cpp: CPUID/XGETBV detection and the ISA cap. The cap is an atomic so that a
// kernel reading it while another Python thread changes it sees either value, not garbage.
#include "dispatch.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <stdexcept>
#include <thread>

#include "common.h"

#if defined(__x86_64__) || defined(_M_X64)
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#define RC_X86 1
#endif

namespace rc {
namespace {

#ifdef RC_X86
void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
#if defined(_MSC_VER)
    int v[4];
    __cpuidex(v, (int)leaf, (int)sub);
    for (int i = 0; i < 4; ++i) r[i] = (uint32_t)v[i];
#else
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#endif
}

uint64_t xgetbv0() {
#if defined(_MSC_VER)
    return _xgetbv(0);
#else
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
#endif
}
#endif

Isa detect() {
#ifdef RC_X86
    uint32_t r[4];
    cpuid(0, 0, r);
    uint32_t max_leaf = r[0];
    if (max_leaf < 7) return Isa::scalar;
    cpuid(1, 0, r);
    bool osxsave = r[2] & (1u << 27), avx = r[2] & (1u << 28), fma = r[2] & (1u << 12);
    if (!(osxsave && avx)) return Isa::scalar;
    uint64_t xcr0 = xgetbv0();
    bool os_ymm = (xcr0 & 0x6) == 0x6;     // SSE + AVX state saved by the OS
    bool os_zmm = (xcr0 & 0xE6) == 0xE6;   // + opmask, ZMM_Hi256, Hi16_ZMM
    cpuid(7, 0, r);
    const uint32_t max_sub = r[0];
    bool avx2 = r[1] & (1u << 5);
    bool f = r[1] & (1u << 16), dq = r[1] & (1u << 17), bw = r[1] & (1u << 30),
         vl = r[1] & (1u << 31);
    if (os_zmm && avx2 && fma && f && dq && bw && vl) {
        if (max_sub >= 1) cpuid(7, 1, r);
        const bool bf16 = max_sub >= 1 && (r[0] & (1u << 5));  // AVX512_BF16: CPUID.(7,1):EAX bit 5
        return bf16 ? Isa::avx512_bf16 : Isa::avx512;
    }
    if (os_ymm && avx2 && fma) return Isa::avx2;
#endif
    return Isa::scalar;
}

// AMX tiles: CPUID.(7,0):EDX bits 24 (AMX-TILE) and 22 (AMX-BF16), the OS enabling
// XTILECFG and XTILEDATA (XCR0 bits 17, 18), and Linux granting this process tile data
// (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); without it the first tile
// instruction faults).
std::string detect_amx() {
#ifdef RC_X86
    uint32_t r[4];
    cpuid(0, 0, r);
    if (r[0] < 7) return "absent (no AMX-TILE/AMX-BF16 in CPUID)";
    cpuid(7, 0, r);
    if (!((r[3] & (1u << 24)) && (r[3] & (1u << 22)))) return "absent (no AMX-TILE/AMX-BF16 in CPUID)";
    cpuid(1, 0, r);
    if (!(r[2] & (1u << 27)) || (xgetbv0() & (3u << 17)) != (3u << 17))
        return "absent (the OS does not enable tile state in XCR0)";
#if defined(__linux__)
    const long ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0)
        return "present, but Linux refused tile data (arch_prctl)";
    return "present and permitted (no AMX kernels yet: bf16 runs avx512_bf16)";
#else
    return "present (no AMX kernels yet: bf16 runs avx512_bf16)";
#endif
#else
    return "absent (not x86-64)";
#endif
}

// The paths compiled into this build, scalar first.
constexpr Isa kCompiled[] = {
    Isa::scalar,
#ifdef RESNET_CPP_HAVE_AVX2
    Isa::avx2,
#endif
#ifdef RESNET_CPP_HAVE_AVX512
    Isa::avx512,
#endif
#ifdef RESNET_CPP_HAVE_AVX512_BF16
    Isa::avx512_bf16,
#endif
};

Isa best_compiled(Isa want) {
    Isa best = Isa::scalar;
    for (Isa i : kCompiled)
        if ((int)i <= (int)want) best = i;
    return best;
}

std::atomic<int> g_cap{(int)env_setting("RESNET_CPP_MAX_ISA", Isa::avx512_bf16, parse_isa)};

}  // namespace

const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::avx512_bf16: return "avx512_bf16";
        case Isa::avx512: return "avx512";
        case Isa::avx2: return "avx2";
        default: return "scalar";
    }
}

Isa parse_isa(const std::string& name) {
    if (name == "scalar") return Isa::scalar;
    if (name == "avx2") return Isa::avx2;
    if (name == "avx512") return Isa::avx512;
    if (name == "avx512_bf16") return Isa::avx512_bf16;
    throw std::invalid_argument("isa: expected one of 'scalar', 'avx2', 'avx512', 'avx512_bf16', got '" +
                                name + "'");
}

const std::string& amx_status() {
    static const std::string s = detect_amx();
    return s;
}

Isa detected_isa() {
    static const Isa d = detect();
    return d;
}

std::vector<Isa> compiled_isas() {
    return std::vector<Isa>(std::begin(kCompiled), std::end(kCompiled));
}

Isa max_isa() { return (Isa)g_cap.load(std::memory_order_relaxed); }
void set_max_isa(Isa isa) { g_cap.store((int)isa, std::memory_order_relaxed); }

Isa active_path() {
    int cap = g_cap.load(std::memory_order_relaxed);
    int hw = (int)detected_isa();
    return best_compiled((Isa)(cap < hw ? cap : hw));
}

int max_num_threads() {
#ifdef RESNET_CPP_HAVE_OPENMP
    static const int bound = 4 * omp_get_num_procs();  // CPUs in this process's affinity mask
#else
    static const int bound = 4 * std::max(1u, std::thread::hardware_concurrency());
#endif
    return bound;
}

// One process-wide thread count (OpenMP's own is per calling thread, so a kernel called
// from another Python thread would ignore omp_set_num_threads made on the main one).
// Kernels open their parallel regions with num_threads(rc::num_threads()). The default,
// OMP_NUM_THREADS or all cores, is clamped to the bound (the module warns when it is).
namespace {
std::atomic<int> g_threads{std::min(max_threads(), max_num_threads())};
}

void set_num_threads(int n) {
    RC_CHECK(n >= 1 && n <= max_num_threads(),
             "n: expected a thread count in [1, " + std::to_string(max_num_threads()) +
                 "] (at most 4 per logical CPU), got " + std::to_string(n));
#ifdef RESNET_CPP_HAVE_OPENMP
    g_threads.store(n, std::memory_order_relaxed);
#endif
}

int num_threads() { return g_threads.load(std::memory_order_relaxed); }

}  // namespace rc
