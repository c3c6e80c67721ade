// The emulator's <cuda_pipeline_primitives.h>: CUDA's asynchronous-copy primitives for g++ (the
// queue and its rules: gpuconv/emulator/emu_pipeline.h). Found before CUDA's own header, whose
// inline PTX g++ cannot compile.
#pragma once
#include <stddef.h>

inline void __pipeline_memcpy_async(void* __restrict__ dst_shared, const void* __restrict__ src_global,
                                    size_t size_and_align, size_t zfill = 0, const char* file = __builtin_FILE(),
                                    int line = __builtin_LINE()) {
    ::gpuconv_emu::async_copy(dst_shared, src_global, size_and_align, zfill, file, line);
}
inline void __pipeline_commit() { ::gpuconv_emu::async_commit(); }
inline void __pipeline_wait_prior(size_t prior) { ::gpuconv_emu::async_wait_prior(prior); }
