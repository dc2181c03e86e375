// emu.cpp: the fiber scheduler behind emu.h: runs every block of a launch in turn, its threads
// round-robin (each until its next barrier/shuffle or its end) until all have finished.
#include "emu.h"

thread_local uint3 threadIdx, blockIdx;
thread_local dim3 blockDim, gridDim;

namespace {

struct Fiber {
    ucontext_t ctx;
    bool done;
    std::vector<char> stack;
    uint3 tid;
};

std::vector<Fiber> fibers;
ucontext_t scheduler;
int current = -1;
const std::function<void()>* kernel_body;
float shuffle_slots[1024];

void trampoline() {
    (*kernel_body)();
    fibers[current].done = true;
    swapcontext(&fibers[current].ctx, &scheduler);
}

}  // namespace

void emu_yield() {
    const int me = current;
    swapcontext(&fibers[me].ctx, &scheduler);
    threadIdx = fibers[me].tid;
}

// Every lane publishes, yields (all lanes publish), reads its partner, yields (all read).
float emu_shfl_xor(float v, int lane_mask) {
    const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    shuffle_slots[t] = v;
    emu_yield();
    const int lane = t % 32;
    const float r = shuffle_slots[t - lane + (lane ^ lane_mask)];
    emu_yield();
    return r;
}

namespace {
std::vector<std::function<void()>>* capture = nullptr;
void run_launch(dim3 grid, dim3 block, const std::function<void()>& body);
}  // namespace

bool emu_capturing() { return capture != nullptr; }
void emu_capture_begin() { capture = new std::vector<std::function<void()>>; }
std::vector<std::function<void()>>* emu_capture_end() {
    auto* ops = capture;
    capture = nullptr;
    return ops;
}
void emu_record(std::function<void()> op) { capture->push_back(std::move(op)); }

void emu_launch(dim3 grid, dim3 block, const std::function<void()>& body) {
    if (capture)
        capture->push_back([grid, block, body] { run_launch(grid, block, body); });
    else
        run_launch(grid, block, body);
}

namespace {
void run_launch(dim3 grid, dim3 block, const std::function<void()>& body) {
    const int nt = block.x * block.y * block.z;
    if (nt > 1024) {
        std::fprintf(stderr, "emu_launch: block of %d threads\n", nt);
        std::abort();
    }
    if ((int)fibers.size() < nt) fibers.resize(nt);
    for (Fiber& f : fibers)
        if (f.stack.empty()) f.stack.resize(256 * 1024);
    gridDim = grid;
    blockDim = block;
    kernel_body = &body;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                blockIdx = {bx, by, bz};
                for (int t = 0; t < nt; ++t) {
                    Fiber& f = fibers[t];
                    f.done = false;
                    f.tid = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
                    getcontext(&f.ctx);
                    f.ctx.uc_stack.ss_sp = f.stack.data();
                    f.ctx.uc_stack.ss_size = f.stack.size();
                    f.ctx.uc_link = nullptr;
                    makecontext(&f.ctx, trampoline, 0);
                }
                for (bool running = true; running;) {
                    running = false;
                    for (int t = 0; t < nt; ++t) {
                        if (fibers[t].done) continue;
                        current = t;
                        threadIdx = fibers[t].tid;
                        swapcontext(&scheduler, &fibers[t].ctx);
                        running |= !fibers[t].done;
                    }
                }
            }
}
}  // namespace
