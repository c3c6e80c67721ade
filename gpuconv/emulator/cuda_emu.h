// CUDA device-code surface for g++: force-included before a .cu file so that the unmodified
// source compiles as host C++ and runs with CUDA's execution semantics (see emu_runtime.h).
// Covers what the project's kernels use: qualifiers, thread indices, shared memory,
// barriers, warp collectives, atomics, math intrinsics, CUDA's own vector and half types.
#pragma once
#define GPUCONV_EMULATOR 1

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>

// CUDA's headers compiled as host code: the real float2/float4/__half layouts and conversions.
#include <vector_types.h>
#include <vector_functions.h>
#include <cuda_fp16.h>

#include "emu_runtime.h"

// ---------------------------------------------------------------- qualifiers
// __device__, __host__, __constant__, __forceinline__, __noinline__, __align__ come from CUDA's
// host_defines.h. __global__ and __shared__ become markers that the loader rewrites after
// preprocessing: __global__ disappears (after the extern "C" kernels were collected),
// __shared__ makes the variable static and registers it to be filled with NaN before every block, and an
// `extern __shared__ T name[]` declaration becomes a pointer to the dynamic shared buffer.
#undef __global__
#define __global__ __gpuconv_emu_global__
#undef __shared__
#define __shared__ __gpuconv_emu_shared__
#undef __launch_bounds__
#define __launch_bounds__(...)
#define warpSize 32

// ---------------------------------------------------------------- thread indices
#define threadIdx (::gpuconv_emu::thread_idx())
#define blockIdx (::gpuconv_emu::block_idx())
#define blockDim (::gpuconv_emu::block_dim())
#define gridDim (::gpuconv_emu::grid_dim())

// ---------------------------------------------------------------- barriers
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ::gpuconv_emu::block_barrier(::gpuconv_emu::kSync, 0, file, line);
}
inline int __syncthreads_count(int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return static_cast<int>(::gpuconv_emu::block_barrier(::gpuconv_emu::kSyncCount, predicate, file, line));
}
inline int __syncthreads_and(int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return static_cast<int>(::gpuconv_emu::block_barrier(::gpuconv_emu::kSyncAnd, predicate, file, line));
}
inline int __syncthreads_or(int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return static_cast<int>(::gpuconv_emu::block_barrier(::gpuconv_emu::kSyncOr, predicate, file, line));
}
// Blocks run one at a time, so fences have nothing to order.
inline void __threadfence() {}
inline void __threadfence_block() {}
inline void __threadfence_system() {}

// ---------------------------------------------------------------- warp collectives
namespace gpuconv_emu {
template <class T> unsigned long long to_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffled values must be at most 8 bytes");
    unsigned long long bits = 0;
    memcpy(&bits, &v, sizeof v);
    return bits;
}
template <class T> T from_bits(unsigned long long bits) {
    T v;
    memcpy(&v, &bits, sizeof v);
    return v;
}
}  // namespace gpuconv_emu

template <class T>
T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize, const char* file = __builtin_FILE(),
              int line = __builtin_LINE()) {
    using namespace gpuconv_emu;
    return from_bits<T>(warp_collective(kShflIdx, mask, to_bits(var), srcLane, width, file, line));
}
template <class T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize, const char* file = __builtin_FILE(),
                 int line = __builtin_LINE()) {
    using namespace gpuconv_emu;
    return from_bits<T>(warp_collective(kShflUp, mask, to_bits(var), static_cast<int>(delta), width, file, line));
}
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize, const char* file = __builtin_FILE(),
                   int line = __builtin_LINE()) {
    using namespace gpuconv_emu;
    return from_bits<T>(warp_collective(kShflDown, mask, to_bits(var), static_cast<int>(delta), width, file, line));
}
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize, const char* file = __builtin_FILE(),
                  int line = __builtin_LINE()) {
    using namespace gpuconv_emu;
    return from_bits<T>(warp_collective(kShflXor, mask, to_bits(var), laneMask, width, file, line));
}
inline unsigned __ballot_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return static_cast<unsigned>(::gpuconv_emu::warp_collective(::gpuconv_emu::kBallot, mask, predicate != 0, 0, 32, file, line));
}
inline int __any_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return static_cast<int>(::gpuconv_emu::warp_collective(::gpuconv_emu::kAny, mask, predicate != 0, 0, 32, file, line));
}
inline int __all_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return static_cast<int>(::gpuconv_emu::warp_collective(::gpuconv_emu::kAll, mask, predicate != 0, 0, 32, file, line));
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ::gpuconv_emu::warp_collective(::gpuconv_emu::kSyncWarp, mask, 0, 0, 32, file, line);
}
inline unsigned __activemask(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return ::gpuconv_emu::active_mask(file, line);
}

// ---------------------------------------------------------------- errors
#undef assert
#if defined(NDEBUG)
#define assert(e) ((void)0)
#else
#define assert(e) ((e) ? (void)0 : ::gpuconv_emu::fail_thread("assertion '%s' failed at %s:%d", #e, __FILE__, __LINE__))
#endif
inline void __trap(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ::gpuconv_emu::fail_thread("__trap() at %s:%d", file, line);
}

// ---------------------------------------------------------------- atomics
// Relaxed GCC atomics: cheap here, and TSan recognises them as atomic accesses.
#define GPUCONV_EMU_ATOMIC_INT(T)                                                                              \
    inline T atomicAdd(T* a, T v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }                      \
    inline T atomicAnd(T* a, T v) { return __atomic_fetch_and(a, v, __ATOMIC_RELAXED); }                      \
    inline T atomicOr(T* a, T v) { return __atomic_fetch_or(a, v, __ATOMIC_RELAXED); }                        \
    inline T atomicXor(T* a, T v) { return __atomic_fetch_xor(a, v, __ATOMIC_RELAXED); }                      \
    inline T atomicExch(T* a, T v) { return __atomic_exchange_n(a, v, __ATOMIC_RELAXED); }                    \
    inline T atomicCAS(T* a, T expected, T desired) {                                                          \
        __atomic_compare_exchange_n(a, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);         \
        return expected;                                                                                       \
    }                                                                                                          \
    inline T atomicMax(T* a, T v) {                                                                            \
        T old = __atomic_load_n(a, __ATOMIC_RELAXED);                                                          \
        while (old < v && !__atomic_compare_exchange_n(a, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) \
            ;                                                                                                  \
        return old;                                                                                            \
    }                                                                                                          \
    inline T atomicMin(T* a, T v) {                                                                            \
        T old = __atomic_load_n(a, __ATOMIC_RELAXED);                                                          \
        while (old > v && !__atomic_compare_exchange_n(a, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) \
            ;                                                                                                  \
        return old;                                                                                            \
    }
GPUCONV_EMU_ATOMIC_INT(int)
GPUCONV_EMU_ATOMIC_INT(unsigned int)
GPUCONV_EMU_ATOMIC_INT(unsigned long long)
GPUCONV_EMU_ATOMIC_INT(long long)
#undef GPUCONV_EMU_ATOMIC_INT
inline int atomicSub(int* a, int v) { return __atomic_fetch_sub(a, v, __ATOMIC_RELAXED); }
inline unsigned atomicSub(unsigned* a, unsigned v) { return __atomic_fetch_sub(a, v, __ATOMIC_RELAXED); }
inline unsigned short atomicCAS(unsigned short* a, unsigned short expected, unsigned short desired) {
    __atomic_compare_exchange_n(a, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return expected;
}

namespace gpuconv_emu {
// Floating-point read-modify-write as a compare-and-swap loop on the bit pattern.
template <class F, class Bits, class Op> F atomic_float_update(F* address, Op op) {
    Bits* bits = reinterpret_cast<Bits*>(address);
    Bits old = __atomic_load_n(bits, __ATOMIC_RELAXED);
    for (;;) {
        F value = from_bits<F>(old);
        Bits desired = static_cast<Bits>(to_bits(op(value)));
        if (__atomic_compare_exchange_n(bits, &old, desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return value;
    }
}
}  // namespace gpuconv_emu
inline float atomicAdd(float* a, float v) {
    return ::gpuconv_emu::atomic_float_update<float, unsigned>(a, [v](float x) { return x + v; });
}
inline double atomicAdd(double* a, double v) {
    return ::gpuconv_emu::atomic_float_update<double, unsigned long long>(a, [v](double x) { return x + v; });
}
inline float atomicExch(float* a, float v) {
    return ::gpuconv_emu::atomic_float_update<float, unsigned>(a, [v](float) { return v; });
}

// ---------------------------------------------------------------- loads, math and bit intrinsics
template <class T> inline T __ldg(const T* p) { return *p; }

inline int min(int a, int b) { return a < b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline float rsqrtf(float a) { return 1.0f / sqrtf(a); }
inline double rsqrt(double a) { return 1.0 / sqrt(a); }
inline float __expf(float a) { return expf(a); }
inline float __logf(float a) { return logf(a); }
inline float __powf(float a, float b) { return powf(a, b); }
inline float __sinf(float a) { return sinf(a); }
inline float __cosf(float a) { return cosf(a); }
inline float __saturatef(float a) { return a != a ? 0.0f : fminf(fmaxf(a, 0.0f), 1.0f); }

inline int __float2int_rn(float a) { return static_cast<int>(nearbyintf(a)); }
inline int __float2int_rz(float a) { return static_cast<int>(a); }
inline int __float2int_rd(float a) { return static_cast<int>(floorf(a)); }
inline int __float2int_ru(float a) { return static_cast<int>(ceilf(a)); }
inline float __int2float_rn(int a) { return static_cast<float>(a); }
inline int __float_as_int(float a) { return ::gpuconv_emu::from_bits<int>(::gpuconv_emu::to_bits(a)); }
inline unsigned __float_as_uint(float a) { return ::gpuconv_emu::from_bits<unsigned>(::gpuconv_emu::to_bits(a)); }
inline float __int_as_float(int a) { return ::gpuconv_emu::from_bits<float>(::gpuconv_emu::to_bits(a)); }
inline float __uint_as_float(unsigned a) { return ::gpuconv_emu::from_bits<float>(::gpuconv_emu::to_bits(a)); }
inline long long __double_as_longlong(double a) { return ::gpuconv_emu::from_bits<long long>(::gpuconv_emu::to_bits(a)); }
inline double __longlong_as_double(long long a) { return ::gpuconv_emu::from_bits<double>(::gpuconv_emu::to_bits(a)); }

inline int __popc(unsigned a) { return __builtin_popcount(a); }
inline int __popcll(unsigned long long a) { return __builtin_popcountll(a); }
inline int __clz(int a) { return a ? __builtin_clz(static_cast<unsigned>(a)) : 32; }
inline int __clzll(long long a) { return a ? __builtin_clzll(static_cast<unsigned long long>(a)) : 64; }
inline int __ffs(int a) { return __builtin_ffs(a); }
inline int __ffsll(long long a) { return __builtin_ffsll(a); }
inline unsigned __brev(unsigned a) {
    a = ((a >> 1) & 0x55555555u) | ((a & 0x55555555u) << 1);
    a = ((a >> 2) & 0x33333333u) | ((a & 0x33333333u) << 2);
    a = ((a >> 4) & 0x0f0f0f0fu) | ((a & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(a);
}
inline int __mul24(int a, int b) { return (a << 8 >> 8) * (b << 8 >> 8); }
inline unsigned __umul24(unsigned a, unsigned b) { return (a & 0xffffffu) * (b & 0xffffffu); }
inline int __mulhi(int a, int b) { return static_cast<int>((static_cast<long long>(a) * b) >> 32); }
inline unsigned __umulhi(unsigned a, unsigned b) { return static_cast<unsigned>((static_cast<unsigned long long>(a) * b) >> 32); }

// ---------------------------------------------------------------- half precision, device-only in cuda_fp16.h
// Templates, so that a header version which does define one for host code wins overload resolution.
// __hfma is exact in double (products of halves have 22 bits), then rounded once, as on the device.
#define GPUCONV_EMU_HALF(H) template <class H, class = std::enable_if_t<std::is_same<H, __half>::value>>
GPUCONV_EMU_HALF(H) H __hfma(H a, H b, H c) {
    return __double2half(static_cast<double>(__half2float(a)) * __half2float(b) + __half2float(c));
}
template <class H2, class = std::enable_if_t<std::is_same<H2, __half2>::value>>
H2 __hfma2(H2 a, H2 b, H2 c) {
    return __halves2half2(__hfma(__low2half(a), __low2half(b), __low2half(c)),
                          __hfma(__high2half(a), __high2half(b), __high2half(c)));
}
GPUCONV_EMU_HALF(H) int __half2int_rn(H a) { return __float2int_rn(__half2float(a)); }
GPUCONV_EMU_HALF(H) H hexp(H a) { return __float2half(expf(__half2float(a))); }
GPUCONV_EMU_HALF(H) H hlog(H a) { return __float2half(logf(__half2float(a))); }
GPUCONV_EMU_HALF(H) H hsqrt(H a) { return __float2half(sqrtf(__half2float(a))); }
GPUCONV_EMU_HALF(H) H hrsqrt(H a) { return __float2half(rsqrtf(__half2float(a))); }
#undef GPUCONV_EMU_HALF

// ---------------------------------------------------------------- half precision parameters
namespace gpuconv_emu {
template <> struct ScalarCode<__half> { static constexpr const char* value = "f16"; };
template <> struct PointeeCode<__half2> { static constexpr const char* value = "f16"; };
}  // namespace gpuconv_emu

// ---------------------------------------------------------------- tensor cores and asynchronous copies
// The runtime of the emulator's <mma.h> and <cuda_pipeline.h> (gpuconv/emulator/include/, searched
// before CUDA's own headers).
#include "emu_wmma.h"
#include "emu_pipeline.h"
