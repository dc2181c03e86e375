// dispatch.h: which instruction-set path runs. Detected once (CPUID + XGETBV), limited to
// the paths compiled into this build, and capped by RESNET_CPP_MAX_ISA or set_max_isa().
// The paths are ordered, each containing the ones below it: avx512_bf16 is avx512 plus
// vdpbf16ps, which only the bf16 convolutions use (set_conv_precision); capping at avx512
// makes them fall back to fp32, so one machine tests every path. Each op runs the first
// implementation of its list (registry.h) that active_path() allows.
#pragma once
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace rc {

enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2, avx512_bf16 = 3 };

const char* isa_name(Isa isa);
Isa parse_isa(const std::string& name);  // throws std::invalid_argument on unknown names
Isa detected_isa();                      // best the CPU and OS support (compiled or not)
std::vector<Isa> compiled_isas();        // scalar first
Isa max_isa();                           // the cap
void set_max_isa(Isa isa);               // cap the path; never raises above what runs
Isa active_path();                       // min(best compiled+supported, cap); no allocation
// Whether AMX tiles could run here (CPUID, XCR0, Linux permission), in words, detected once.
// Reported by build_info only: no kernel uses AMX yet.
const std::string& amx_status();

// Threads every kernel uses: OMP_NUM_THREADS (or all cores) at import, then set_num_threads().
// Kernels write `#pragma omp parallel for num_threads(rc::num_threads())`.
void set_num_threads(int n);  // throws std::invalid_argument outside [1, max_num_threads()]
int num_threads();
// The bound on the thread count: 4 per logical CPU this process may run on. More threads
// never speed up these kernels, and libgomp aborts the process (it cannot report an error)
// when it fails to create the thousands a typo can ask for under a memory limit.
int max_num_threads();

// The setting named by environment variable `name`, parsed by `parse` (which throws
// std::invalid_argument on bad names), or `fallback` when unset or bad: a typo must not
// break the import; build_info() shows what is in effect.
template <class T, class Parse>
T env_setting(const char* name, T fallback, Parse parse) {
    const char* env = std::getenv(name);
    if (!env || !*env) return fallback;
    try {
        return parse(env);
    } catch (const std::invalid_argument&) {
        return fallback;
    }
}

}  // namespace rc
