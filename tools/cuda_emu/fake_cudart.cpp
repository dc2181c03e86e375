// fake_cudart.cpp: the CUDA runtime calls the _cuda module makes, for the CPU emulation:
// device memory is host memory, every call is synchronous. Graph capture records launches and
// async memsets/copies (emu_capture_*); frees during a capture are deferred forever so
// replays never touch freed memory. Pinned host allocations are remembered, so
// cudaPointerGetAttributes tells them from pageable memory as the real runtime does.
#include <cuda_runtime.h>
#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

#include "emu.h"
static cudaError_t last = cudaSuccess;
static std::map<void*, size_t> allocs;
static size_t used = 0;
static const size_t kTotal = size_t(8) << 30;
static cudaError_t fail(cudaError_t e) { last = e; return e; }
extern "C" {
cudaError_t cudaGetDeviceCount(int* n) { *n = 1; return cudaSuccess; }
cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
cudaError_t cudaGetLastError() { cudaError_t e = last; last = cudaSuccess; return e; }
cudaError_t cudaPeekAtLastError() { return last; }
const char* cudaGetErrorName(cudaError_t e) {
    switch (e) { case cudaSuccess: return "cudaSuccess"; case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorNotSupported: return "cudaErrorNotSupported"; default: return "cudaErrorUnknown"; }
}
const char* cudaGetErrorString(cudaError_t e) { return e == cudaErrorMemoryAllocation ? "out of memory" : "emulated error"; }
// RESNET_CPP_EMU_MALLOC_LIMIT=<bytes> (read at each call, so a test can set it for a while):
// larger cudaMallocs fail although cudaMemGetInfo reports the memory free, as on a device
// whose free memory is fragmented or taken by another process in between.
static bool over_test_limit(size_t n) {
    const char* v = std::getenv("RESNET_CPP_EMU_MALLOC_LIMIT");
    return v && *v && n > std::strtoull(v, nullptr, 10);
}
cudaError_t cudaMalloc(void** p, size_t n) {
    if (n > kTotal - used || over_test_limit(n)) return fail(cudaErrorMemoryAllocation);
    *p = std::malloc(n ? n : 1); allocs[*p] = n; used += n; return cudaSuccess;
}
cudaError_t cudaFree(void* p) { if (!p) return cudaSuccess; auto it = allocs.find(p); if (it == allocs.end()) return fail(cudaErrorInvalidValue); used -= it->second; allocs.erase(it); std::free(p); return cudaSuccess; }
cudaError_t cudaMallocAsync(void** p, size_t n, cudaStream_t) { return cudaMalloc(p, n); }
cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return emu_capturing() ? cudaSuccess : cudaFree(p); }
cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind, cudaStream_t) {
    if (emu_capturing()) emu_record([=] { std::memcpy(d, s, n); });
    else std::memcpy(d, s, n);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t) {
    if (emu_capturing()) emu_record([=] { std::memset(d, v, n); });
    else std::memset(d, v, n);
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return emu_capturing() ? fail(cudaErrorStreamCaptureUnsupported) : cudaSuccess; }
cudaError_t cudaStreamIsCapturing(cudaStream_t, cudaStreamCaptureStatus* s) {
    *s = emu_capturing() ? cudaStreamCaptureStatusActive : cudaStreamCaptureStatusNone;
    return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
    *v = a == cudaDevAttrMultiProcessorCount ? 4 : a == cudaDevAttrComputeCapabilityMajor ? 8 : 0; return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
    std::memset(p, 0, sizeof(*p)); std::strcpy(p->name, "Emulated"); p->major = 8; p->minor = 0;
    p->multiProcessorCount = 4; p->totalGlobalMem = kTotal; return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) { *v = 13000; return cudaSuccess; }
cudaError_t cudaRuntimeGetVersion(int* v) { *v = 13000; return cudaSuccess; }
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* a, const void*) { std::memset(a, 0, sizeof(*a)); return cudaSuccess; }
static std::map<void*, size_t> pinned;
cudaError_t cudaHostAlloc(void** p, size_t n, unsigned) { *p = std::malloc(n ? n : 1); pinned[*p] = n ? n : 1; return cudaSuccess; }
cudaError_t cudaFreeHost(void* p) { if (!pinned.erase(p)) return fail(cudaErrorInvalidValue); std::free(p); return cudaSuccess; }
// Whether p lies in one of the blocks of `m` (base -> size).
static bool inside(const std::map<void*, size_t>& m, const void* p) {
    auto it = m.upper_bound(const_cast<void*>(p));
    return it != m.begin() && (--it, (const char*)p < (const char*)it->first + it->second);
}
// Device allocations and pinned blocks are known; anything else is pageable host memory.
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* a, const void* p) {
    std::memset(a, 0, sizeof(*a));
    a->type = inside(allocs, p) ? cudaMemoryTypeDevice : inside(pinned, p) ? cudaMemoryTypeHost : cudaMemoryTypeUnregistered;
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* f, size_t* t) { *f = kTotal - used; *t = kTotal; return cudaSuccess; }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { *e = (cudaEvent_t)std::malloc(8); return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventDestroy(cudaEvent_t e) { std::free(e); return cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) { *s = (cudaStream_t)std::malloc(8); return cudaSuccess; }
cudaError_t cudaStreamDestroy(cudaStream_t s) { std::free(s); return cudaSuccess; }
using Ops = std::vector<std::function<void()>>;
cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) { emu_capture_begin(); return cudaSuccess; }
cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t* g) { *g = (cudaGraph_t)emu_capture_end(); return cudaSuccess; }
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long) { *e = (cudaGraphExec_t)g; return cudaSuccess; }
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t) {
    for (auto& op : *(Ops*)e) op();
    return cudaSuccess;
}
cudaError_t cudaGraphGetNodes(cudaGraph_t g, cudaGraphNode_t*, size_t* n) { *n = ((Ops*)g)->size(); return cudaSuccess; }
cudaError_t cudaGraphDestroy(cudaGraph_t g) { delete (Ops*)g; return cudaSuccess; }
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t) { return cudaSuccess; }
}
