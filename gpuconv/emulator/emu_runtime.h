// The emulator's runtime: kernel registry, the block scheduler (threads as fibers, barriers,
// warp collectives, thread and block orders) and the C entry points the Python loader calls.
// Blocks run one after another; inside a block every thread runs until it blocks (barrier,
// warp collective) or exits, then the scheduler checks and releases what can proceed.
#pragma once
#include <dlfcn.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <type_traits>
#include <utility>

#include <vector_types.h>

#include "emu_fiber.h"

namespace gpuconv_emu {

// ---------------------------------------------------------------- limits of the largest GPU
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxBlockDim[3] = {1024, 1024, 64};
constexpr unsigned long long kMaxGridDim[3] = {2147483647ull, 65535ull, 65535ull};
constexpr size_t kMaxSharedBytes = 227 * 1024;  // H100 opt-in maximum per block
constexpr unsigned kWarpSize = 32;

// ---------------------------------------------------------------- kernel registry
template <class T> struct ScalarCode { static constexpr const char* value = nullptr; };
#define GPUCONV_EMU_SCALAR(T, code) template <> struct ScalarCode<T> { static constexpr const char* value = code; };
GPUCONV_EMU_SCALAR(bool, "b8")
GPUCONV_EMU_SCALAR(char, "i8")
GPUCONV_EMU_SCALAR(signed char, "i8")
GPUCONV_EMU_SCALAR(unsigned char, "u8")
GPUCONV_EMU_SCALAR(short, "i16")
GPUCONV_EMU_SCALAR(unsigned short, "u16")
GPUCONV_EMU_SCALAR(int, "i32")
GPUCONV_EMU_SCALAR(unsigned int, "u32")
GPUCONV_EMU_SCALAR(long, "i64")
GPUCONV_EMU_SCALAR(unsigned long, "u64")
GPUCONV_EMU_SCALAR(long long, "i64")
GPUCONV_EMU_SCALAR(unsigned long long, "u64")
GPUCONV_EMU_SCALAR(float, "f32")
GPUCONV_EMU_SCALAR(double, "f64")
#undef GPUCONV_EMU_SCALAR

// Element type an array argument must have for a pointer parameter; "?" accepts any array
// (void and byte pointers, structs). Vector types ask for their component type.
template <class T> struct PointeeCode { static constexpr const char* value = ScalarCode<T>::value ? ScalarCode<T>::value : "?"; };
template <> struct PointeeCode<void> { static constexpr const char* value = "?"; };
template <> struct PointeeCode<char> { static constexpr const char* value = "?"; };
template <> struct PointeeCode<signed char> { static constexpr const char* value = "?"; };
template <> struct PointeeCode<unsigned char> { static constexpr const char* value = "?"; };
#define GPUCONV_EMU_VECTOR(type, code) \
    template <> struct PointeeCode<type> { static constexpr const char* value = code; };
GPUCONV_EMU_VECTOR(float1, "f32") GPUCONV_EMU_VECTOR(float2, "f32") GPUCONV_EMU_VECTOR(float3, "f32")
GPUCONV_EMU_VECTOR(float4, "f32") GPUCONV_EMU_VECTOR(double1, "f64") GPUCONV_EMU_VECTOR(double2, "f64")
GPUCONV_EMU_VECTOR(int1, "i32") GPUCONV_EMU_VECTOR(int2, "i32") GPUCONV_EMU_VECTOR(int3, "i32")
GPUCONV_EMU_VECTOR(int4, "i32") GPUCONV_EMU_VECTOR(uint1, "u32") GPUCONV_EMU_VECTOR(uint2, "u32")
GPUCONV_EMU_VECTOR(uint3, "u32") GPUCONV_EMU_VECTOR(uint4, "u32") GPUCONV_EMU_VECTOR(longlong1, "i64")
GPUCONV_EMU_VECTOR(longlong2, "i64") GPUCONV_EMU_VECTOR(ulonglong1, "u64") GPUCONV_EMU_VECTOR(ulonglong2, "u64")
#undef GPUCONV_EMU_VECTOR

// Parameter code: "*<element>" for pointers, the scalar code otherwise.
template <class T> struct ParamCode {
    static_assert(ScalarCode<T>::value != nullptr,
                  "emulated kernel parameters must be pointers or arithmetic scalars (no structs by value)");
    static void append(char* out, size_t n) { strncat(out, ScalarCode<T>::value, n - strlen(out) - 1); }
};
template <class T> struct ParamCode<T*> {
    static void append(char* out, size_t n) {
        strncat(out, "*", n - strlen(out) - 1);
        strncat(out, PointeeCode<std::remove_cv_t<T>>::value, n - strlen(out) - 1);
    }
};

using ErasedKernel = void (*)();
using Invoker = void (*)(ErasedKernel, void* const*);

struct Kernel {
    const char* name;
    char signature[512];  // comma-separated parameter codes
    ErasedKernel fn;
    Invoker invoke;
};

constexpr int kMaxKernels = 4096;
inline Kernel g_kernels[kMaxKernels];
inline int g_kernel_count = 0;

template <class... A> struct Call {
    template <size_t... I> static void unpack(ErasedKernel fn, void* const* args, std::index_sequence<I...>) {
        reinterpret_cast<void (*)(A...)>(fn)(*static_cast<std::remove_cv_t<A>*>(args[I])...);
    }
    static void invoke(ErasedKernel fn, void* const* args) { unpack(fn, args, std::index_sequence_for<A...>{}); }
};

// Called from the registration lines the loader appends to the source.
template <class... A> int register_kernel(const char* name, void (*fn)(A...)) {
    if (g_kernel_count == kMaxKernels) return -1;
    Kernel& k = g_kernels[g_kernel_count];
    k.name = name;
    k.signature[0] = 0;
    int i = 0;
    ((strncat(k.signature, i++ ? "," : "", sizeof k.signature - strlen(k.signature) - 1),
      ParamCode<std::remove_cv_t<A>>::append(k.signature, sizeof k.signature)), ...);
    k.fn = reinterpret_cast<ErasedKernel>(fn);
    k.invoke = &Call<A...>::invoke;
    return g_kernel_count++;
}

// ---------------------------------------------------------------- threads and the block
enum ThreadState : int { kRunnable, kAtBarrier, kAtWarp, kExited, kFailed };
enum Collective : int { kShflIdx, kShflUp, kShflDown, kShflXor, kBallot, kAny, kAll, kSyncWarp, kActiveMask,
                        kMatrixLoad, kMatrixStore, kMatrixMma };
enum Barrier : int { kSync, kSyncCount, kSyncAnd, kSyncOr };
enum Order : int { kForward = 0, kReverse = 1, kRandom = 2 };

inline const char* collective_name(int kind) {
    static const char* names[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
                                  "__ballot_sync", "__any_sync", "__all_sync", "__syncwarp", "__activemask",
                                  "load_matrix_sync", "store_matrix_sync", "mma_sync"};
    return names[kind];
}
inline const char* barrier_name(int kind) {
    static const char* names[] = {"__syncthreads", "__syncthreads_count", "__syncthreads_and", "__syncthreads_or"};
    return names[kind];
}

// Operands of a warp matrix operation (nvcuda::wmma, emu_wmma.h), compared across the warp's lanes.
struct MatrixCall {
    const void* memory;  // load/store: the matrix in memory
    unsigned ldm;        // load/store: leading dimension in elements
    int layout;          // load/store: kRowMajor or kColMajor (emu_wmma.h)
    int kinds[4];        // fragment kinds (emu_wmma.h): load/store use [0]; mma_sync d, a, b, c
    void* storage[4];    // this lane's fragment arrays (x[]), in the same order
};

// A thread's __pipeline_memcpy_async copies not yet performed (emu_pipeline.h).
struct AsyncCopy {
    unsigned char* dst;
    const unsigned char* src;
    unsigned bytes, zero_fill;
    unsigned long long batch;  // the commit that closes it: the thread's commit count when it was queued
};
constexpr unsigned kMaxAsyncCopies = 64;
struct AsyncCopies {
    AsyncCopy queue[kMaxAsyncCopies];
    unsigned count;
    unsigned long long commits;
};

struct Thread {
    Fiber fiber;
    uint3 idx;
    unsigned lane, warp;
    int state;
    // Where a blocked thread waits, and its operands.
    int kind;
    const char* file;
    int line;
    unsigned mask;
    int param, width;
    unsigned long long value, result;
    MatrixCall matrix;
    AsyncCopies async;
};

struct Launch {
    HostContext host;
    Thread threads[kMaxThreadsPerBlock];
    unsigned fibers_allocated = 0;
    unsigned nthreads = 0;
    Thread* current = nullptr;
    const Kernel* kernel = nullptr;
    void* const* args = nullptr;
    dim3 grid, block;
    uint3 block_idx;
    size_t dynamic_shared_bytes = 0;
    unsigned long long rng = 0;
    unsigned long long seed = 0;  // the launch's seed (thread order, fragment element mapping)
    bool failed = false;
    char error[2048];
    // Addresses TSan uses as synchronisation objects.
    char barrier_sync, block_end_sync, warp_sync[kMaxThreadsPerBlock / kWarpSize];
};
inline Launch g;

// Static __shared__ variables register themselves (the loader appends a register_shared call to each
// declaration in a function, a SharedVariable object at namespace scope); dynamic shared memory is
// one buffer, poisoned for ASan past the launch's size.
struct SharedRegion {
    unsigned char* begin;
    size_t bytes;
    const Kernel* kernel;  // the kernel that declared it; nullptr: namespace scope, any kernel
};
constexpr int kMaxStaticShared = 1 << 16;
inline SharedRegion g_static_shared[kMaxStaticShared];
inline int g_static_shared_count = 0;
alignas(256) inline unsigned char g_dynamic_shared[kMaxSharedBytes];

inline void* dynamic_shared_base() { return g_dynamic_shared; }

inline void tsan_release(void* addr) {
#if defined(__SANITIZE_THREAD__)
    __tsan_release(addr);
#endif
    (void)addr;
}
inline void tsan_acquire(void* addr) {
#if defined(__SANITIZE_THREAD__)
    __tsan_acquire(addr);
#endif
    (void)addr;
}

GPUCONV_EMU_RUNTIME inline void describe_thread(char* out, size_t n, const Thread* t) {
    snprintf(out, n, "kernel '%s', block (%u,%u,%u), thread (%u,%u,%u)", g.kernel->name, g.block_idx.x,
             g.block_idx.y, g.block_idx.z, t->idx.x, t->idx.y, t->idx.z);
}

// Record the first error of a launch: "kernel ..., block ..., thread ...: <what>".
GPUCONV_EMU_RUNTIME __attribute__((format(printf, 2, 3))) inline void record_error(const Thread* t, const char* fmt, ...) {
    if (g.failed) return;
    g.failed = true;
    describe_thread(g.error, sizeof g.error, t);
    size_t used = strlen(g.error);
    snprintf(g.error + used, sizeof g.error - used, ": ");
    used = strlen(g.error);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g.error + used, sizeof g.error - used, fmt, ap);
    va_end(ap);
}

// ---------------------------------------------------------------- called from inside a thread
GPUCONV_EMU_RUNTIME inline uint3 thread_idx() { return g.current->idx; }
GPUCONV_EMU_RUNTIME inline uint3 block_idx() { return g.block_idx; }
GPUCONV_EMU_RUNTIME inline dim3 block_dim() { return g.block; }
GPUCONV_EMU_RUNTIME inline dim3 grid_dim() { return g.grid; }

// Stop the calling thread for good and make the launch fail with this message.
[[noreturn]] GPUCONV_EMU_RUNTIME __attribute__((format(printf, 1, 2))) inline void fail_thread(const char* fmt, ...) {
    Thread* t = g.current;
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    record_error(t, "%s", what);
    t->state = kFailed;
    switch_to_host(&g.host, &t->fiber, true);
    __builtin_unreachable();
}

GPUCONV_EMU_RUNTIME inline unsigned long long block_barrier(int kind, int predicate, const char* file, int line) {
    Thread* t = g.current;
    t->state = kAtBarrier;
    t->kind = kind;
    t->file = file;
    t->line = line;
    t->value = predicate != 0;
    tsan_release(&g.barrier_sync);
    switch_to_host(&g.host, &t->fiber, false);
    tsan_acquire(&g.barrier_sync);
    return t->result;
}

GPUCONV_EMU_RUNTIME inline unsigned long long warp_collective(int kind, unsigned mask, unsigned long long value,
                                                              int param, int width, const char* file, int line) {
    Thread* t = g.current;
    if (!(mask >> t->lane & 1u))
        fail_thread("%s at %s:%d: mask 0x%08x does not include the calling lane %u", collective_name(kind), file, line,
                    mask, t->lane);
    if (kind <= kShflXor && (width < 1 || width > 32 || (width & (width - 1))))
        fail_thread("%s at %s:%d: width %d is not a power of two in 1..32", collective_name(kind), file, line, width);
    t->state = kAtWarp;
    t->kind = kind;
    t->file = file;
    t->line = line;
    t->mask = mask;
    t->value = value;
    t->param = param;
    t->width = width;
    if (kind == kSyncWarp) tsan_release(&g.warp_sync[t->warp]);
    switch_to_host(&g.host, &t->fiber, false);
    if (kind == kSyncWarp) tsan_acquire(&g.warp_sync[t->warp]);
    return t->result;
}

// __activemask: the calling thread waits until no thread can run; the lanes of its warp that
// wait at __activemask then are the ones that reached it together (a converged group).
GPUCONV_EMU_RUNTIME inline unsigned active_mask(const char* file, int line) {
    Thread* t = g.current;
    t->state = kAtWarp;
    t->kind = kActiveMask;
    t->file = file;
    t->line = line;
    t->mask = 1u << t->lane;
    switch_to_host(&g.host, &t->fiber, false);
    return static_cast<unsigned>(t->result);
}

GPUCONV_EMU_RUNTIME inline void thread_main(void* arg) {
    Thread* t = static_cast<Thread*>(arg);
    fiber_arrived(&g.host, &t->fiber);
    g.kernel->invoke(g.kernel->fn, g.args);
    t->state = kExited;
    tsan_release(&g.block_end_sync);
    switch_to_host(&g.host, &t->fiber, true);
    __builtin_unreachable();
}

// ---------------------------------------------------------------- the scheduler
GPUCONV_EMU_RUNTIME inline unsigned long long next_random() {  // splitmix64
    unsigned long long z = (g.rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

GPUCONV_EMU_RUNTIME inline void thread_order(unsigned* order, unsigned n, int mode) {
    for (unsigned i = 0; i < n; ++i) order[i] = mode == kReverse ? n - 1 - i : i;
    if (mode == kRandom)
        for (unsigned i = n; i > 1; --i) {
            unsigned j = static_cast<unsigned>(next_random() % i);
            unsigned tmp = order[i - 1];
            order[i - 1] = order[j];
            order[j] = tmp;
        }
}

// Shared memory starts every block as NaN (0x7fffffff words: NaN as float, double and half,
// INT_MAX as int), so a missing barrier or a short halo reads garbage instead of stale data.
// Plain stores, never turned into a memset call: TSan would see an intercepted memset from the
// thread that first registers a variable as a write racing with the other threads' reads.
GPUCONV_EMU_RUNTIME __attribute__((optimize("no-tree-loop-distribute-patterns"))) inline void poison_fill(
    unsigned char* begin, unsigned char* end) {
    static const unsigned char pattern[4] = {0xff, 0xff, 0xff, 0x7f};
    const unsigned long long words = 0x7fffffff7fffffffull;
    unsigned char* p = begin;
    for (; p < end && (reinterpret_cast<uintptr_t>(p) & 7u); ++p) *p = pattern[reinterpret_cast<uintptr_t>(p) & 3u];
    for (; p + 8 <= end; p += 8) memcpy(p, &words, 8);
    for (; p < end; ++p) *p = pattern[reinterpret_cast<uintptr_t>(p) & 3u];
}

GPUCONV_EMU_RUNTIME inline void fill_shared_memory() {
    for (int i = 0; i < g_static_shared_count; ++i) {
        const SharedRegion& r = g_static_shared[i];
        if (!r.kernel || r.kernel == g.kernel) poison_fill(r.begin, r.begin + r.bytes);
    }
    poison_fill(g_dynamic_shared, g_dynamic_shared + g.dynamic_shared_bytes);
}

GPUCONV_EMU_RUNTIME inline bool add_shared_region(unsigned char* begin, size_t bytes, const Kernel* kernel) {
    if (g_static_shared_count == kMaxStaticShared) return false;
    g_static_shared[g_static_shared_count++] = {begin, bytes, kernel};
    poison_fill(begin, begin + bytes);
    return true;
}

// Called where a static __shared__ declaration inside a function executes, i.e. before any
// thread of the kernel's first block used the variable: poison it now, and before each later
// block of that kernel.
GPUCONV_EMU_RUNTIME inline void register_shared(void* address, size_t bytes) {
    unsigned char* begin = static_cast<unsigned char*>(address);
    for (int i = g_static_shared_count - 1; i >= 0; --i)
        if (g_static_shared[i].begin == begin && g_static_shared[i].kernel == g.kernel) return;
    if (!add_shared_region(begin, bytes, g.kernel))
        fail_thread("more than %d static __shared__ variables", kMaxStaticShared);
}

// The same for a __shared__ variable at namespace scope, registered when the library loads.
struct SharedVariable {
    GPUCONV_EMU_RUNTIME SharedVariable(void* address, size_t bytes) {
        add_shared_region(static_cast<unsigned char*>(address), bytes, nullptr);
    }
};

// Release the warp collectives whose lanes have all arrived. Returns how many threads became
// runnable, or -1 after recording an error.
GPUCONV_EMU_RUNTIME inline int release_active_masks() {
    unsigned masks[kMaxThreadsPerBlock / kWarpSize] = {};
    int released = 0;
    for (unsigned i = 0; i < g.nthreads; ++i)
        if (g.threads[i].state == kAtWarp && g.threads[i].kind == kActiveMask) masks[i / kWarpSize] |= 1u << (i % kWarpSize);
    for (unsigned i = 0; i < g.nthreads; ++i) {
        Thread* t = &g.threads[i];
        if (t->state == kAtWarp && t->kind == kActiveMask) {
            t->result = masks[t->warp];
            t->state = kRunnable;
            ++released;
        }
    }
    return released;
}

// Warp matrix operations (defined in emu_wmma.h): whether lane `other` made the same call as `first`
// (else an error is recorded); the matrix product of a warp whose 32 lanes all reached mma_sync;
// a fresh lane <-> element mapping of fragments for a new launch.
GPUCONV_EMU_RUNTIME inline bool matrix_calls_agree(const Thread* first, const Thread* other);
GPUCONV_EMU_RUNTIME inline bool matrix_mma(Thread* lanes);
GPUCONV_EMU_RUNTIME inline void forget_fragment_maps();

GPUCONV_EMU_RUNTIME inline int release_warp_collectives() {
    int released = release_active_masks();
    if (released) return released;  // other collectives may be waiting for these lanes
    for (unsigned i = 0; i < g.nthreads; ++i) {
        Thread* t = &g.threads[i];
        if (t->state != kAtWarp) continue;
        unsigned base = t->warp * kWarpSize;
        for (unsigned lane = 0; lane < kWarpSize; ++lane) {
            if (!(t->mask >> lane & 1u)) continue;
            unsigned linear = base + lane;
            if (linear >= g.nthreads) {
                record_error(t, "%s at %s:%d: mask 0x%08x names lane %u, which does not exist in a block of %u threads "
                             "(full-mask collectives need a block size that is a multiple of 32)",
                             collective_name(t->kind), t->file, t->line, t->mask, lane, g.nthreads);
                return -1;
            }
            const Thread* o = &g.threads[linear];
            if (o->state == kExited) {
                record_error(t, "%s at %s:%d: mask 0x%08x names lane %u, which has exited", collective_name(t->kind),
                             t->file, t->line, t->mask, lane);
                return -1;
            }
            if (o->state == kAtBarrier) {
                record_error(t, "%s at %s:%d: mask 0x%08x names lane %u, which waits at %s (%s:%d) instead",
                             collective_name(t->kind), t->file, t->line, t->mask, lane, barrier_name(o->kind), o->file,
                             o->line);
                return -1;
            }
            if (o->kind != t->kind || o->mask != t->mask) {
                record_error(t, "%s at %s:%d with mask 0x%08x, but lane %u is at %s (%s:%d) with mask 0x%08x",
                             collective_name(t->kind), t->file, t->line, t->mask, lane, collective_name(o->kind),
                             o->file, o->line, o->mask);
                return -1;
            }
            if (t->kind >= kMatrixLoad && !matrix_calls_agree(t, o)) return -1;
        }
        if (t->kind == kMatrixMma && !matrix_mma(&g.threads[base])) return -1;
        // Every lane of the mask is here: compute each one's result.
        unsigned votes = 0;
        for (unsigned lane = 0; lane < kWarpSize; ++lane)
            if ((t->mask >> lane & 1u) && g.threads[base + lane].value) votes |= 1u << lane;
        for (unsigned lane = 0; lane < kWarpSize; ++lane) {
            if (!(t->mask >> lane & 1u)) continue;
            Thread* me = &g.threads[base + lane];
            unsigned width = static_cast<unsigned>(me->width), segment = lane & ~(width - 1u);
            unsigned src = lane;
            bool reads = true;
            switch (me->kind) {
                case kShflIdx: src = segment + (static_cast<unsigned>(me->param) & (width - 1u)); break;
                case kShflUp: reads = (lane - segment) >= static_cast<unsigned>(me->param); src = lane - me->param; break;
                case kShflDown: reads = (lane - segment) + me->param < width; src = lane + me->param; break;
                // As in CUDA: a lane may read an earlier group of `width` lanes, never a later one.
                case kShflXor: src = lane ^ (static_cast<unsigned>(me->param) & (kWarpSize - 1)); reads = src < segment + width; break;
                default: reads = false;
            }
            if (me->kind <= kShflXor) {
                if (reads && !(me->mask >> src & 1u)) {
                    record_error(me, "%s at %s:%d: reads lane %u, outside its mask 0x%08x", collective_name(me->kind),
                                 me->file, me->line, src, me->mask);
                    return -1;
                }
                me->result = reads ? g.threads[base + src].value : me->value;
            } else if (me->kind == kBallot) {
                me->result = votes;
            } else if (me->kind == kAny) {
                me->result = votes != 0;
            } else if (me->kind == kAll) {
                me->result = votes == me->mask;
            }
        }
        for (unsigned lane = 0; lane < kWarpSize; ++lane)
            if (t->mask >> lane & 1u) g.threads[base + lane].state = kRunnable;
        released += __builtin_popcount(t->mask);
    }
    return released;
}

// Nobody can run: either the block is done, or every live thread waits at the same barrier.
// Returns 1 when the barrier was released, 0 when the block finished, -1 on an error.
GPUCONV_EMU_RUNTIME inline int release_barrier() {
    const Thread* waiting = nullptr;
    const Thread* exited = nullptr;
    unsigned n_exited = 0;
    for (unsigned i = 0; i < g.nthreads; ++i) {
        const Thread* t = &g.threads[i];
        if (t->state == kExited) {
            if (!exited) exited = t;
            ++n_exited;
        } else if (!waiting) {
            waiting = t;
        }
    }
    if (!waiting) return 0;
    if (exited) {
        record_error(exited, "exited while %u other thread(s) wait at %s (%s:%d): a barrier reached by only part of the "
                     "block (divergent __syncthreads)", g.nthreads - n_exited, barrier_name(waiting->kind),
                     waiting->file, waiting->line);
        return -1;
    }
    unsigned long long count = 0;
    for (unsigned i = 0; i < g.nthreads; ++i) {
        const Thread* t = &g.threads[i];
        if (t->kind != waiting->kind || t->line != waiting->line ||
            (t->file != waiting->file && strcmp(t->file, waiting->file) != 0)) {
            record_error(t, "waits at %s (%s:%d) while thread (%u,%u,%u) waits at %s (%s:%d): threads wait at different "
                         "barriers (barriers are told apart by source line)", barrier_name(t->kind), t->file, t->line,
                         waiting->idx.x, waiting->idx.y, waiting->idx.z, barrier_name(waiting->kind), waiting->file,
                         waiting->line);
            return -1;
        }
        count += t->value;
    }
    unsigned long long result = 0;
    if (waiting->kind == kSyncCount) result = count;
    if (waiting->kind == kSyncAnd) result = count == g.nthreads;
    if (waiting->kind == kSyncOr) result = count != 0;
    for (unsigned i = 0; i < g.nthreads; ++i) {
        g.threads[i].result = result;
        g.threads[i].state = kRunnable;
    }
    return 1;
}

// Sanitizer reports name their own thread ids; these tell which CUDA thread that was.
GPUCONV_EMU_RUNTIME inline void name_fibers_for_tsan() {
#if defined(__SANITIZE_THREAD__)
    char name[256];
    for (unsigned i = 0; i < g.nthreads; ++i) {
        describe_thread(name, sizeof name, &g.threads[i]);
        __tsan_set_fiber_name(g.threads[i].fiber.tsan_fiber, name);
    }
#endif
}

GPUCONV_EMU_RUNTIME inline void report_current_thread() {
    if (!g.current) return;
    char who[256];
    describe_thread(who, sizeof who, g.current);
    fprintf(stderr, "gpuconv emulator: the sanitizer error above happened in %s\n", who);
}

// ASan and UBSan are separate runtimes, each with its own death callback.
inline void set_sanitizer_death_callbacks() {
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_set_death_callback(&report_current_thread);
    if (void* ubsan = dlopen("libubsan.so.1", RTLD_NOW | RTLD_NOLOAD)) {
        using Setter = void (*)(void (*)());
        if (auto set = reinterpret_cast<Setter>(dlsym(ubsan, "__sanitizer_set_death_callback"))) set(&report_current_thread);
        dlclose(ubsan);
    }
#endif
}

GPUCONV_EMU_RUNTIME inline bool run_block(int order) {
    fill_shared_memory();
    for (unsigned i = 0; i < g.nthreads; ++i) {
        Thread* t = &g.threads[i];
        t->state = kRunnable;
        t->async.count = 0;  // copies a thread never waited for are never performed
        t->async.commits = 0;
        fiber_reset(&t->fiber, &thread_main, t);
    }
    name_fibers_for_tsan();
    static unsigned sequence[kMaxThreadsPerBlock];
    for (;;) {
        thread_order(sequence, g.nthreads, order);
        for (unsigned i = 0; i < g.nthreads; ++i) {
            Thread* t = &g.threads[sequence[i]];
            if (t->state != kRunnable) continue;
            g.current = t;
            switch_to_fiber(&g.host, &t->fiber);
            g.current = nullptr;
            if (t->state == kFailed) return false;
        }
        int released = release_warp_collectives();
        if (released < 0) return false;
        if (released > 0) continue;
        int barrier = release_barrier();
        if (barrier < 0) return false;
        if (barrier == 0) break;
    }
    tsan_acquire(&g.block_end_sync);
    return true;
}

// Abandon the fibers of a failed block (their frames never return) so the next launch starts clean.
GPUCONV_EMU_RUNTIME inline void abandon_block() {
    for (unsigned i = 0; i < g.nthreads; ++i) fiber_forget_frames(&g.threads[i].fiber);
    g.current = nullptr;
}

GPUCONV_EMU_RUNTIME inline bool check_configuration(const unsigned long long* grid, const unsigned long long* block,
                                                    unsigned long long shared_bytes) {
    static const char axis[] = "xyz";
    unsigned long long threads = 1;
    for (int d = 0; d < 3; ++d) {
        if (block[d] < 1 || block[d] > kMaxBlockDim[d]) {
            snprintf(g.error, sizeof g.error, "kernel '%s': blockDim.%c = %llu is outside 1..%u", g.kernel->name,
                     axis[d], block[d], kMaxBlockDim[d]);
            return false;
        }
        if (grid[d] < 1 || grid[d] > kMaxGridDim[d]) {
            snprintf(g.error, sizeof g.error, "kernel '%s': gridDim.%c = %llu is outside 1..%llu", g.kernel->name,
                     axis[d], grid[d], kMaxGridDim[d]);
            return false;
        }
        threads *= block[d];
    }
    if (threads > kMaxThreadsPerBlock) {
        snprintf(g.error, sizeof g.error, "kernel '%s': a block of %llux%llux%llu = %llu threads exceeds the limit of %u",
                 g.kernel->name, block[0], block[1], block[2], threads, kMaxThreadsPerBlock);
        return false;
    }
    if (shared_bytes > kMaxSharedBytes) {
        snprintf(g.error, sizeof g.error,
                 "kernel '%s': %llu bytes of dynamic shared memory exceed the largest GPU's limit of %zu bytes (227 KiB)",
                 g.kernel->name, shared_bytes, kMaxSharedBytes);
        return false;
    }
    return true;
}

GPUCONV_EMU_RUNTIME inline bool prepare_threads() {
    for (unsigned i = 0; i < g.nthreads; ++i) {
        Thread* t = &g.threads[i];
        if (i >= g.fibers_allocated) {
            if (!fiber_allocate(&t->fiber)) {
                snprintf(g.error, sizeof g.error, "kernel '%s': cannot allocate a stack for thread %u", g.kernel->name, i);
                return false;
            }
            g.fibers_allocated = i + 1;
        }
        t->idx = make_uint3(i % g.block.x, i / g.block.x % g.block.y, i / (g.block.x * g.block.y));
        t->lane = i % kWarpSize;
        t->warp = i / kWarpSize;
    }
    return true;
}

GPUCONV_EMU_RUNTIME inline void set_dynamic_shared_size(size_t bytes) {
    g.dynamic_shared_bytes = bytes;
#if defined(__SANITIZE_ADDRESS__)
    ASAN_UNPOISON_MEMORY_REGION(g_dynamic_shared, bytes);
    ASAN_POISON_MEMORY_REGION(g_dynamic_shared + bytes, kMaxSharedBytes - bytes);
#endif
}

inline unsigned long long gcd(unsigned long long a, unsigned long long b) {
    while (b) {
        unsigned long long r = a % b;
        a = b;
        b = r;
    }
    return a;
}

// Blocks visited in order; "random" walks a seeded affine bijection of the block indices.
GPUCONV_EMU_RUNTIME inline int run_grid(int order) {
    unsigned long long nblocks = 1ull * g.grid.x * g.grid.y * g.grid.z;
    unsigned long long step = 1, offset = 0;
    if (order == kRandom && nblocks > 1) {
        offset = next_random() % nblocks;
        do step = next_random() % nblocks; while (step == 0 || gcd(step, nblocks) != 1);
    }
    for (unsigned long long i = 0; i < nblocks; ++i) {
        unsigned long long b = order == kReverse ? nblocks - 1 - i
                               : order == kRandom ? (unsigned long long)((unsigned __int128)i * step % nblocks + offset) % nblocks
                                                  : i;
        g.block_idx = make_uint3(static_cast<unsigned>(b % g.grid.x), static_cast<unsigned>(b / g.grid.x % g.grid.y),
                                 static_cast<unsigned>(b / (1ull * g.grid.x * g.grid.y)));
        if (!run_block(order)) {
            abandon_block();
            return 1;
        }
    }
    return 0;
}

// ---------------------------------------------------------------- faults inside a kernel
// Without a sanitizer, a wild access or a fiber stack overflow in a kernel would kill Python:
// during a launch, SIGSEGV/SIGBUS in an emulated thread unwinds to the launch and fails it.
// (Sanitizer builds keep the sanitizer's own handler and report.)
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
inline sigjmp_buf g_fault_exit;
inline void* volatile g_fault_address;
inline struct sigaction g_previous_segv, g_previous_bus;

GPUCONV_EMU_RUNTIME inline void on_fault(int sig, siginfo_t* info, void*) {
    if (!g.current) {  // not in a kernel: the previous handler sees the access when it repeats
        sigaction(sig, sig == SIGSEGV ? &g_previous_segv : &g_previous_bus, nullptr);
        return;
    }
    g_fault_address = info->si_addr;
    siglongjmp(g_fault_exit, 1);
}

GPUCONV_EMU_RUNTIME inline void record_fault() {
    const unsigned char* address = static_cast<const unsigned char*>(g_fault_address);
    const unsigned char* stack = reinterpret_cast<const unsigned char*>(g.current->fiber.stack_lo);
    if (address >= stack - kGuardBytes && address < stack)
        record_error(g.current, "stack overflow: the thread used more than its %zu KiB fiber stack",
                     kFiberStackBytes / 1024);
    else
        record_error(g.current, "segmentation fault at address %p (an out-of-bounds or wild access; "
                     "GPUCONV_EMU_SANITIZER=address locates it)", g_fault_address);
}

GPUCONV_EMU_RUNTIME inline int run_grid_catching_faults(int order) {
    alignas(16) static char handler_stack[64 * 1024];
    stack_t alternate = {}, previous_stack;
    alternate.ss_sp = handler_stack;
    alternate.ss_size = sizeof handler_stack;
    sigaltstack(&alternate, &previous_stack);
    struct sigaction action = {};
    action.sa_sigaction = &on_fault;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSEGV, &action, &g_previous_segv);
    sigaction(SIGBUS, &action, &g_previous_bus);
    int status;
    if (sigsetjmp(g_fault_exit, 1) == 0) {
        status = run_grid(order);
    } else {
        record_fault();
        abandon_block();
        status = 1;
    }
    sigaction(SIGSEGV, &g_previous_segv, nullptr);
    sigaction(SIGBUS, &g_previous_bus, nullptr);
    sigaltstack(&previous_stack, nullptr);
    return status;
}
#else
inline int run_grid_catching_faults(int order) { return run_grid(order); }
#endif

}  // namespace gpuconv_emu

// ---------------------------------------------------------------- entry points for the loader
extern "C" {
__attribute__((visibility("default"))) int gpuconv_emu_kernel_count() { return gpuconv_emu::g_kernel_count; }
__attribute__((visibility("default"))) const char* gpuconv_emu_kernel_name(int i) { return gpuconv_emu::g_kernels[i].name; }
__attribute__((visibility("default"))) const char* gpuconv_emu_kernel_signature(int i) {
    return gpuconv_emu::g_kernels[i].signature;
}
__attribute__((visibility("default"))) const char* gpuconv_emu_error() { return gpuconv_emu::g.error; }
__attribute__((visibility("default"))) void* gpuconv_emu_alloc(size_t bytes) {
    void* p = nullptr;
    return posix_memalign(&p, 256, bytes) == 0 ? p : nullptr;  // cudaMalloc's alignment, exact size for ASan
}
__attribute__((visibility("default"))) void gpuconv_emu_free(void* p) { free(p); }

// Runs kernel `index` over the whole grid. Returns 0, or 1 with gpuconv_emu_error() set.
GPUCONV_EMU_RUNTIME __attribute__((visibility("default"))) int gpuconv_emu_launch(
    int index, const unsigned long long* grid, const unsigned long long* block, unsigned long long shared_bytes,
    void* const* args, int order, unsigned long long seed) {
    using namespace gpuconv_emu;
    g.failed = false;
    g.error[0] = 0;
    g.kernel = &g_kernels[index];
    if (!check_configuration(grid, block, shared_bytes)) return 1;
    g.grid = dim3(grid[0], grid[1], grid[2]);
    g.block = dim3(block[0], block[1], block[2]);
    g.nthreads = static_cast<unsigned>(block[0] * block[1] * block[2]);
    g.args = args;
    g.rng = seed;
    g.seed = seed;
    forget_fragment_maps();
    if (!prepare_threads()) return 1;
    set_sanitizer_death_callbacks();
    set_dynamic_shared_size(shared_bytes);
    return run_grid_catching_faults(order);
}
}
