// The runtime side of CUDA's asynchronous-copy primitives (the emulator's
// include/cuda_pipeline_primitives.h). Each __pipeline_memcpy_async is queued in the calling thread
// and performed, by that thread, at the __pipeline_wait_prior that covers it; until then its
// destination keeps what it held (shared memory: the NaN poison), so a read before the wait shows.
// Copies a thread never waits for are never performed.
#pragma once

namespace gpuconv_emu {

GPUCONV_EMU_RUNTIME inline bool is_shared_address(const void* p) {
    const unsigned char* a = static_cast<const unsigned char*>(p);
    if (a >= g_dynamic_shared && a < g_dynamic_shared + kMaxSharedBytes) return true;
    for (int i = 0; i < g_static_shared_count; ++i)
        if (a >= g_static_shared[i].begin && a < g_static_shared[i].begin + g_static_shared[i].bytes) return true;
    return false;
}

GPUCONV_EMU_RUNTIME inline AsyncCopies& current_copies() { return g.current->async; }

inline void async_copy(void* dst, const void* src, size_t bytes, size_t zero_fill, const char* file, int line) {
    if (bytes != 4 && bytes != 8 && bytes != 16)
        fail_thread("__pipeline_memcpy_async at %s:%d: size_and_align = %zu; it copies 4, 8 or 16 bytes", file, line,
                    bytes);
    if (zero_fill > bytes)
        fail_thread("__pipeline_memcpy_async at %s:%d: zfill = %zu exceeds size_and_align = %zu", file, line,
                    zero_fill, bytes);
    if (reinterpret_cast<uintptr_t>(dst) % bytes || reinterpret_cast<uintptr_t>(src) % bytes)
        fail_thread("__pipeline_memcpy_async at %s:%d: destination %p and source %p must both be aligned to "
                    "size_and_align = %zu bytes", file, line, dst, src, bytes);
    if (!is_shared_address(dst))
        fail_thread("__pipeline_memcpy_async at %s:%d: destination %p is not in shared memory", file, line, dst);
    if (is_shared_address(src))
        fail_thread("__pipeline_memcpy_async at %s:%d: source %p is in shared memory; it must be global memory", file,
                    line, src);
    AsyncCopies& q = current_copies();
    if (q.count == kMaxAsyncCopies)
        fail_thread("__pipeline_memcpy_async at %s:%d: more than %u copies of this thread are pending (the emulator's "
                    "limit); wait for some with __pipeline_wait_prior first", file, line, kMaxAsyncCopies);
    q.queue[q.count++] = {static_cast<unsigned char*>(dst), static_cast<const unsigned char*>(src),
                          static_cast<unsigned>(bytes), static_cast<unsigned>(zero_fill), q.commits};
}

inline void async_commit() { ++current_copies().commits; }

// Performs the copies of every committed batch but the `prior` most recent ones, in queue order.
inline void async_wait_prior(size_t prior) {
    AsyncCopies& q = current_copies();
    unsigned kept = 0;
    for (unsigned i = 0; i < q.count; ++i) {
        const AsyncCopy c = q.queue[i];
        if (c.batch + prior < q.commits) {
            for (unsigned b = 0; b < c.bytes; ++b) c.dst[b] = b < c.bytes - c.zero_fill ? c.src[b] : 0;
        } else {
            q.queue[kept++] = c;
        }
    }
    q.count = kept;
}

}  // namespace gpuconv_emu
