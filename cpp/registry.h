// registry.h: one ordered list of implementations per op family (oneDNN's implementation
// lists are the model). An entry names its algorithm, the least ISA path that runs it, when
// it applies, and its kernel (or set of kernels, simd/kernels.h). Lists are written best
// first with the scalar reference last; a call runs the first entry that the active path
// allows (active_path(): CPU, build and cap) and whose applicable(query) accepts the call.
// The scalar entry applies to every call, so some entry always runs.
//
//   const Impl<AnyCall, const PoolKernels*> kPool[] = {
//       RC_IF_AVX512({"pool", Isa::avx512, nullptr, &avx512::pool})
//       RC_IF_AVX2({"pool", Isa::avx2, nullptr, &avx2::pool})
//       {"pool", Isa::scalar, nullptr, &scalar::pool},
//   };
//   pick(kPool).fn->max_forward(y, argmax, x, s);
//
// A lookup walks a few entries (an atomic load, a comparison each): no allocation, no
// string. _core.impl_name(op, ...) and _core.impl_list(op) report the lists (all_ops()).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "dispatch.h"

namespace rc {

// The query of a family whose entries apply to every call.
struct AnyCall {};

template <class Query, class Fn>
struct Impl {
    const char* name;                  // the algorithm, the same on every ISA ("winograd4")
    Isa isa;                           // the least path that runs it
    bool (*applicable)(const Query&);  // null: every call
    Fn fn;                             // the kernel, or a pointer to its kernel set
};

// The entry a call runs: the first the active path allows and that applies (the list's
// last, scalar entry applies to every call).
template <class Query, class Fn, size_t N>
const Impl<Query, Fn>& pick(const Impl<Query, Fn> (&list)[N], const Query& q = Query{}) {
    const int path = int(active_path());
    for (const Impl<Query, Fn>& e : list)
        if (int(e.isa) <= path && (!e.applicable || e.applicable(q))) return e;
    return list[N - 1];
}

// Entries of the paths this build compiles: the entry and a comma, or nothing.
#ifdef RESNET_CPP_HAVE_AVX2
#define RC_IF_AVX2(...) __VA_ARGS__,
#else
#define RC_IF_AVX2(...)
#endif
#ifdef RESNET_CPP_HAVE_AVX512
#define RC_IF_AVX512(...) __VA_ARGS__,
#else
#define RC_IF_AVX512(...)
#endif
#ifdef RESNET_CPP_HAVE_AVX512_BF16
#define RC_IF_AVX512_BF16(...) __VA_ARGS__,
#else
#define RC_IF_AVX512_BF16(...)
#endif

// ---------------------------------------------------------------------------------------
// Introspection: each op (a _core kernel function) as impl_name / impl_list see it.
struct OpImpls {
    std::string op;                  // the _core function, e.g. "conv2d_forward"
    std::vector<std::string> shape;  // impl_name's shape arguments, in order (none: {})
    std::vector<std::string> impls;  // its list's entries, best first, as "name:isa"
    // The entry a call of this shape (values in `shape` order) runs now, as "name:isa".
    // Throws std::invalid_argument for a shape no call could have.
    std::function<std::string(const std::vector<int64_t>&)> running;
};

template <class Query, class Fn>
std::string impl_id(const Impl<Query, Fn>& e) {
    return std::string(e.name) + ":" + isa_name(e.isa);
}

template <class Query, class Fn, size_t N>
std::vector<std::string> impl_ids(const Impl<Query, Fn> (&list)[N]) {
    std::vector<std::string> ids;
    for (const Impl<Query, Fn>& e : list) ids.push_back(impl_id(e));
    return ids;
}

// Rows for ops that run a list without a shape query.
template <class Fn, size_t N>
std::vector<OpImpls> any_call_ops(const Impl<AnyCall, Fn> (&list)[N],
                                  std::initializer_list<const char*> ops) {
    std::vector<OpImpls> rows;
    for (const char* op : ops)
        rows.push_back({op, {}, impl_ids(list),
                        [&list](const std::vector<int64_t>&) { return impl_id(pick(list)); }});
    return rows;
}

// Each family's rows, defined next to its list (cpp/<family>.cpp).
std::vector<OpImpls> conv_ops();        // conv.cpp
std::vector<OpImpls> conv_bf16_ops();   // conv_bf16.cpp
std::vector<OpImpls> batch_norm_ops();  // batchnorm.cpp
std::vector<OpImpls> eltwise_ops();     // eltwise.cpp
std::vector<OpImpls> pool_ops();        // pool.cpp
std::vector<OpImpls> linear_ops();      // linear.cpp
std::vector<OpImpls> loss_ops();        // loss.cpp
std::vector<OpImpls> optim_ops();       // optim.cpp
std::vector<OpImpls> augment_ops();     // augment.cpp
std::vector<OpImpls> probe_ops();       // probe.cpp

// Every op's row, built once.
const std::vector<OpImpls>& all_ops();
// The row of `op`; throws std::invalid_argument listing the known ops.
const OpImpls& find_op(const std::string& op);

}  // namespace rc
