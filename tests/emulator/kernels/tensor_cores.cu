// Test kernels for the emulator's warp matrix functions (nvcuda::wmma) and asynchronous-copy
// primitives, checked by tests/emulator/test_emulator_tensor_cores.py; the same file compiles with
// NVRTC against CUDA's own headers. The `extern "C"` kernels after the first two are planted misuse.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <mma.h>
#include <cuda_pipeline.h>

using namespace nvcuda;

// ---- one warp: d = scale * (a (M x K) * b (K x N) + c), every operand in memory with the layouts
// given (leading dimensions lda, ldb, ldc), a and b loaded from global memory; x[] scaled element by
// element (right for any lane <-> element mapping); TF32 inputs rounded with __float_to_tf32.
template <int M, int N, int K, typename T, typename LA, typename LB, bool C_ROW_MAJOR, bool ROUND_TF32>
__global__ void warp_gemm(const typename wmma::helper_traits<T>::storage_element_type* a,
                          const typename wmma::helper_traits<T>::storage_element_type* b, const float* c, float* d,
                          int lda, int ldb, int ldc, float scale) {
    const wmma::layout_t c_layout = C_ROW_MAJOR ? wmma::mem_row_major : wmma::mem_col_major;
    wmma::fragment<wmma::matrix_a, M, N, K, T, LA> fa;
    wmma::fragment<wmma::matrix_b, M, N, K, T, LB> fb;
    wmma::fragment<wmma::accumulator, M, N, K, float> fc, fd;
    wmma::load_matrix_sync(fa, a, lda);
    wmma::load_matrix_sync(fb, b, ldb);
    wmma::load_matrix_sync(fc, c, ldc, c_layout);
    if constexpr (ROUND_TF32) {
        for (int i = 0; i < fa.num_elements; ++i) fa.x[i] = wmma::__float_to_tf32(fa.x[i]);
        for (int i = 0; i < fb.num_elements; ++i) fb.x[i] = wmma::__float_to_tf32(fb.x[i]);
    }
    wmma::mma_sync(fd, fa, fb, fc);
    for (int i = 0; i < fd.num_elements; ++i) fd.x[i] *= scale;
    wmma::store_matrix_sync(d, fd, ldc, c_layout);
}

// ---- asynchronous copies: y[i] = sum over tiles t of x[t * 1024 + i] (i < 1024, 256 threads, 16 bytes
// each), the tiles streamed through a ring of `STAGES` shared buffers, STAGES - 1 tiles ahead; the
// tail of the last tile is zero-filled (its source clamped to a valid address).
template <int STAGES>
__global__ void streamed_sum(const float* x, float* y, int n) {
    __shared__ __align__(16) float ring[STAGES][1024];
    const int tid = threadIdx.x, tiles = (n + 1023) / 1024;
    auto fetch = [&](int t) {
        if (t < tiles) {
            const int i = t * 1024 + 4 * tid, valid = i < n ? (n - i < 4 ? n - i : 4) : 0;
            __pipeline_memcpy_async(&ring[t % STAGES][4 * tid], x + (valid ? i : 0), 16, 4 * (4 - valid));
        }
        __pipeline_commit();
    };
    for (int t = 0; t < STAGES - 1; ++t) fetch(t);
    float sum[4] = {0, 0, 0, 0};
    for (int t = 0; t < tiles; ++t) {
        __pipeline_wait_prior(STAGES - 2);
        __syncthreads();
        fetch(t + STAGES - 1);
        for (int j = 0; j < 4; ++j) sum[j] += ring[t % STAGES][(4 * tid + 512 + j) % 1024];  // another thread's copy
    }
    for (int j = 0; j < 4; ++j) y[(4 * tid + 512 + j) % 1024] = sum[j];
}

// ---- which lane holds which accumulator element: x[i] of lane L is set to L * num_elements + i, stored.
extern "C" __global__ void reveal_mapping(float* d) {
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    for (int i = 0; i < acc.num_elements; ++i) acc.x[i] = float(threadIdx.x % 32 * acc.num_elements + i);
    wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

// ---- misuse, each an EmulatorError (or, for the mapping, a wrong result) -----------------------------
// 16x16x16 float16, a and b row-major with ldm 16, d row-major with ldm 16.
#define FRAGMENTS                                                               \
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;    \
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> fb;    \
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;                  \
    wmma::fill_fragment(acc, 0.0f)

extern "C" __global__ void half_warp_at_mma(const __half* a, const __half* b, float* d) {
    FRAGMENTS;
    wmma::load_matrix_sync(fa, a, 16);
    wmma::load_matrix_sync(fb, b, 16);
    if (threadIdx.x % 32 < 16) wmma::mma_sync(acc, fa, fb, acc);
    wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

extern "C" __global__ void misaligned_ldm(const __half* a, const __half* b, float* d) {
    FRAGMENTS;
    wmma::load_matrix_sync(fa, a, 12);  // 24 bytes
    wmma::load_matrix_sync(fb, b, 16);
    wmma::mma_sync(acc, fa, fb, acc);
    wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

extern "C" __global__ void misaligned_pointer(const __half* a, const __half* b, float* d) {
    FRAGMENTS;
    wmma::load_matrix_sync(fa, a + 8, 16);  // 16 bytes past a 256-byte boundary
    wmma::load_matrix_sync(fb, b, 16);
    wmma::mma_sync(acc, fa, fb, acc);
    wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

extern "C" __global__ void lane_with_another_pointer(const __half* a, const __half* b, float* d) {
    FRAGMENTS;
    wmma::load_matrix_sync(fa, a, 16);
    wmma::load_matrix_sync(fb, b + (threadIdx.x % 32 == 5 ? 16 : 0), 16);
    wmma::mma_sync(acc, fa, fb, acc);
    wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

// Assumes that lane L holds row L / 4 of the accumulator (one real GPU's mapping) to add a bias per row.
extern "C" __global__ void bias_by_assumed_mapping(const __half* a, const __half* b, const float* bias, float* d) {
    FRAGMENTS;
    wmma::load_matrix_sync(fa, a, 16);
    wmma::load_matrix_sync(fb, b, 16);
    wmma::mma_sync(acc, fa, fb, acc);
    for (int i = 0; i < acc.num_elements; ++i) acc.x[i] += bias[threadIdx.x % 32 / 4 + 8 * (i / 4 % 2)];
    wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

// Scales matrix_a's rows by the same assumption: lanes then disagree on elements they share.
extern "C" __global__ void scale_rows_by_assumed_mapping(const __half* a, const __half* b, float* d) {
    FRAGMENTS;
    wmma::load_matrix_sync(fa, a, 16);
    wmma::load_matrix_sync(fb, b, 16);
    for (int i = 0; i < fa.num_elements; ++i) fa.x[i] = __float2half(__half2float(fa.x[i]) * (threadIdx.x % 32 / 4 + 1));
    wmma::mma_sync(acc, fa, fb, acc);
    wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

// Reads the copied tile before (read_early = 1) or after (0) waiting for the copy; 64 threads.
extern "C" __global__ void read_before_wait(const float* x, float* y, int read_early) {
    __shared__ __align__(16) float tile[256];
    const int tid = threadIdx.x;
    __pipeline_memcpy_async(&tile[4 * tid], x + 4 * tid, 16);
    __pipeline_commit();
    if (!read_early) __pipeline_wait_prior(0);
    for (int j = 0; j < 4; ++j) y[4 * tid + j] = tile[4 * tid + j];
    if (read_early) __pipeline_wait_prior(0);
}

// __pipeline_memcpy_async with a bad size, a misaligned or global destination, or a shared source.
extern "C" __global__ void bad_async_copy(const float* x, float* y, int which) {
    __shared__ __align__(16) float tile[64];
    if (which == 0) __pipeline_memcpy_async(tile, x, 12);
    if (which == 1) __pipeline_memcpy_async(tile + 1, x, 8);
    if (which == 2) __pipeline_memcpy_async(y, x, 16);
    if (which == 3) __pipeline_memcpy_async(tile, tile + 4, 16);
    __pipeline_commit();
    __pipeline_wait_prior(0);
}

// ---- for the sanitizer tests (sanitizer_child.py): a wmma load past the end of its array (ASan) and
// reads of other threads' data with or without a barrier in between (TSan); 64 threads.
extern "C" __global__ void load_past_the_end(const __half* a, const __half* b, float* d) {
    FRAGMENTS;
    wmma::load_matrix_sync(fa, a, 24);  // rows 24 apart: reaches a[15 * 24 + 15], past 256 values
    wmma::load_matrix_sync(fb, b, 16);
    wmma::mma_sync(acc, fa, fb, acc);
    wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

extern "C" __global__ void neighbour_copy(const float* x, float* y, int barrier) {
    __shared__ __align__(16) float tile[256];
    const int tid = threadIdx.x;
    __pipeline_memcpy_async(&tile[4 * tid], x + 4 * tid, 16);
    __pipeline_commit();
    __pipeline_wait_prior(0);  // this thread's copy only
    if (barrier) __syncthreads();
    for (int j = 0; j < 4; ++j) y[4 * tid + j] = tile[(4 * tid + 4 + j) % 256];
}

extern "C" __global__ void store_then_other_warp_reads(const __half* a, const __half* b, float* d, int barrier) {
    __shared__ __align__(32) float tile[256];
    FRAGMENTS;
    wmma::load_matrix_sync(fa, a, 16);
    wmma::load_matrix_sync(fb, b, 16);
    wmma::mma_sync(acc, fa, fb, acc);
    if (threadIdx.x < 32) wmma::store_matrix_sync(tile, acc, 16, wmma::mem_row_major);
    if (barrier) __syncthreads();
    if (threadIdx.x >= 32)
        for (int j = 0; j < 8; ++j) d[(threadIdx.x - 32) * 8 + j] = tile[(threadIdx.x - 32) * 8 + j];
}
