// Fibers for the CUDA emulator: every emulated CUDA thread runs on its own stack and gives
// control back at a barrier, a warp collective or its exit. x86-64 uses a hand-written switch
// (callee-saved registers + stack pointer, no syscall); other architectures fall back to
// ucontext (about 7x slower, same semantics). Sanitizer builds announce every switch to
// AddressSanitizer (stack bounds) and ThreadSanitizer (each CUDA thread is a TSan fiber).
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

#if !defined(__x86_64__) && !defined(GPUCONV_EMU_UCONTEXT)
#define GPUCONV_EMU_UCONTEXT 1
#endif
#if defined(GPUCONV_EMU_UCONTEXT)
#include <ucontext.h>
#endif

// Runtime code that keeps the scheduler's books: not instrumented by TSan, because fibers hand
// control back to the scheduler without synchronisation (a synchronising switch would order
// every CUDA thread after every other one and hide the races we look for).
#define GPUCONV_EMU_RUNTIME __attribute__((no_sanitize_thread))

namespace gpuconv_emu {

#if !defined(GPUCONV_EMU_UCONTEXT)
extern "C" void gpuconv_emu_switch(void** save_sp, void* load_sp);
extern "C" void gpuconv_emu_fiber_start();
// switch: push the callee-saved registers, store rsp, load the other rsp, pop, return into it.
// fiber_start: first entry of a fresh fiber; calls entry(arg) held in r13(r12), never returns.
asm(R"(
    .text
    .p2align 4
    .globl gpuconv_emu_switch
    .hidden gpuconv_emu_switch
    .type gpuconv_emu_switch, @function
gpuconv_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size gpuconv_emu_switch, .-gpuconv_emu_switch

    .p2align 4
    .globl gpuconv_emu_fiber_start
    .hidden gpuconv_emu_fiber_start
    .type gpuconv_emu_fiber_start, @function
gpuconv_emu_fiber_start:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size gpuconv_emu_fiber_start, .-gpuconv_emu_fiber_start
)");
#endif

struct Fiber {
    char* stack_lo = nullptr;  // lowest usable address (a guard page lies below it)
    size_t stack_size = 0;
#if defined(GPUCONV_EMU_UCONTEXT)
    ucontext_t uc;
#else
    void* sp = nullptr;
#endif
    void* asan_fake_stack = nullptr;
    void* tsan_fiber = nullptr;
};

// The scheduler's own context (the thread that called launch).
struct HostContext {
#if defined(GPUCONV_EMU_UCONTEXT)
    ucontext_t uc;
#else
    void* sp = nullptr;
#endif
    const void* stack_lo = nullptr;  // learned from ASan at the first switch
    size_t stack_size = 0;
    void* asan_fake_stack = nullptr;
    void* tsan_fiber = nullptr;
};

#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kFiberStackBytes = 512 * 1024;
#else
constexpr size_t kFiberStackBytes = 128 * 1024;
#endif
constexpr size_t kGuardBytes = 4096;

GPUCONV_EMU_RUNTIME inline bool fiber_allocate(Fiber* f) {
    size_t total = kFiberStackBytes + kGuardBytes;
    void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return false;
    mprotect(p, kGuardBytes, PROT_NONE);
    f->stack_lo = static_cast<char*>(p) + kGuardBytes;
    f->stack_size = kFiberStackBytes;
#if defined(__SANITIZE_THREAD__)
    f->tsan_fiber = __tsan_create_fiber(0);
#endif
    return true;
}

// After an aborted launch the stack holds frames that never returned: forget them.
GPUCONV_EMU_RUNTIME inline void fiber_forget_frames(Fiber* f) {
#if defined(__SANITIZE_ADDRESS__)
    ASAN_UNPOISON_MEMORY_REGION(f->stack_lo, f->stack_size);
#endif
#if defined(__SANITIZE_THREAD__)
    __tsan_destroy_fiber(f->tsan_fiber);
    f->tsan_fiber = __tsan_create_fiber(0);
#endif
    (void)f;
}

// Prepare f to run entry(arg) from the top of its stack at the next switch into it.
GPUCONV_EMU_RUNTIME inline void fiber_reset(Fiber* f, void (*entry)(void*), void* arg) {
#if defined(GPUCONV_EMU_UCONTEXT)
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack_lo;
    f->uc.uc_stack.ss_size = f->stack_size;
    f->uc.uc_link = nullptr;
    uintptr_t a = reinterpret_cast<uintptr_t>(arg), e = reinterpret_cast<uintptr_t>(entry);
    makecontext(&f->uc, reinterpret_cast<void (*)()>(+[](unsigned ehi, unsigned elo, unsigned ahi, unsigned alo) {
        auto fn = reinterpret_cast<void (*)(void*)>((uintptr_t(ehi) << 32) | elo);
        fn(reinterpret_cast<void*>((uintptr_t(ahi) << 32) | alo));
    }), 4, unsigned(e >> 32), unsigned(e), unsigned(a >> 32), unsigned(a));
#else
    // Frame popped by gpuconv_emu_switch: r15 r14 r13 r12 rbx rbp, then the return address;
    // after that `ret`, rsp = top - 16 is 16-byte aligned, as the ABI wants before a call.
    void** top = reinterpret_cast<void**>(f->stack_lo + f->stack_size);  // 16-byte aligned
    void** sp = top - 9;
    sp[0] = nullptr;                                  // r15
    sp[1] = nullptr;                                  // r14
    sp[2] = reinterpret_cast<void*>(entry);           // r13
    sp[3] = arg;                                      // r12
    sp[4] = nullptr;                                  // rbx
    sp[5] = nullptr;                                  // rbp
    sp[6] = reinterpret_cast<void*>(&gpuconv_emu_fiber_start);
    sp[7] = sp[8] = nullptr;
    f->sp = sp;
#endif
}

// Scheduler -> fiber. Returns when the fiber switches back. The switch synchronises for TSan:
// everything the scheduler did (shared-memory fill, thread ids) happens before the fiber runs.
GPUCONV_EMU_RUNTIME inline void switch_to_fiber(HostContext* host, Fiber* f) {
#if defined(__SANITIZE_THREAD__)
    if (!host->tsan_fiber) host->tsan_fiber = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(f->tsan_fiber, 0);
#endif
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_start_switch_fiber(&host->asan_fake_stack, f->stack_lo, f->stack_size);
#endif
#if defined(GPUCONV_EMU_UCONTEXT)
    swapcontext(&host->uc, &f->uc);
#else
    gpuconv_emu_switch(&host->sp, f->sp);
#endif
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(host->asan_fake_stack, nullptr, nullptr);
#endif
}

// First thing a fiber does when it runs (fresh or resumed).
GPUCONV_EMU_RUNTIME inline void fiber_arrived(HostContext* host, Fiber* f) {
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(f->asan_fake_stack, &host->stack_lo, &host->stack_size);
#endif
    (void)host;
    (void)f;
}

// Fiber -> scheduler, without synchronisation for TSan. `final` when the fiber never resumes.
GPUCONV_EMU_RUNTIME inline void switch_to_host(HostContext* host, Fiber* f, bool final) {
#if defined(__SANITIZE_THREAD__)
    __tsan_switch_to_fiber(host->tsan_fiber, __tsan_switch_to_fiber_no_sync);
#endif
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_start_switch_fiber(final ? nullptr : &f->asan_fake_stack, host->stack_lo, host->stack_size);
#endif
    (void)final;
#if defined(GPUCONV_EMU_UCONTEXT)
    swapcontext(&f->uc, &host->uc);
#else
    gpuconv_emu_switch(&f->sp, host->sp);
#endif
    fiber_arrived(host, f);
}

}  // namespace gpuconv_emu
