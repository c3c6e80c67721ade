// Test kernels: one CUDA construct (or a few related ones) per kernel, each checked against
// NumPy by tests/emulator/test_emulator_constructs.py. No standard headers, like real kernels.
#include <cuda_fp16.h>

#define BLOCK 64

// ---- thread indices in 3-D: every thread writes its ids and the launch's dimensions
extern "C" __global__ void indices(int* out) {
    const int block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    const int thread = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    int* o = out + 12 * (block * blockDim.x * blockDim.y * blockDim.z + thread);
    o[0] = threadIdx.x; o[1] = threadIdx.y; o[2] = threadIdx.z;
    o[3] = blockIdx.x;  o[4] = blockIdx.y;  o[5] = blockIdx.z;
    o[6] = blockDim.x;  o[7] = blockDim.y;  o[8] = blockDim.z;
    o[9] = gridDim.x;   o[10] = gridDim.y;  o[11] = gridDim.z;
}

// ---- qualifiers, templates by name expression, __ldg, #pragma unroll, __half
template <typename T> struct Acc { typedef T type; };
template <> struct Acc<__half> { typedef float type; };
__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(double* p, double v) { *p = v; }
__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half(v); }

// y[i] = sum_{k<N} x[i + k] * (k + 1)   (a sliding weighted sum, N unrolled)
template <typename T, int N>
__global__ void __launch_bounds__(BLOCK) weighted_window(const T* __restrict__ x, T* __restrict__ y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i + N > n) return;
    typename Acc<T>::type acc = 0;
#pragma unroll
    for (int k = 0; k < N; ++k) acc += to_acc(__ldg(x + i + k)) * (k + 1);
    store(y + i, acc);
}

// ---- static and dynamic shared memory: reverse each block's chunk through both
extern "C" __global__ void reverse_through_shared(const float* x, float* y, int n) {
    __shared__ float staged[BLOCK];
    extern __shared__ float dynamic[];
    const int i = blockIdx.x * BLOCK + threadIdx.x;
    staged[threadIdx.x] = i < n ? x[i] : 0.0f;
    __syncthreads();
    dynamic[threadIdx.x] = staged[BLOCK - 1 - threadIdx.x] * 2.0f;
    __syncthreads();
    if (i < n) y[i] = dynamic[threadIdx.x];
}

// ---- shared memory is NaN (ints: 0x7fffffff) at the start of EVERY block: each block reads
// before writing, then writes, so a block that saw the previous block's data would show it
extern "C" __global__ void shared_starts_poisoned(float* f_static, float* f_dynamic, int* i_static, double* d_static) {
    __shared__ float fs[BLOCK];
    __shared__ int is[BLOCK];
    __shared__ double ds[BLOCK];
    extern __shared__ float fd[];
    const int i = blockIdx.x * BLOCK + threadIdx.x;
    f_static[i] = fs[threadIdx.x];
    f_dynamic[i] = fd[threadIdx.x];
    i_static[i] = is[threadIdx.x];
    d_static[i] = ds[threadIdx.x];
    __syncthreads();
    fs[threadIdx.x] = 1.0f; fd[threadIdx.x] = 2.0f; is[threadIdx.x] = 3; ds[threadIdx.x] = 4.0;
}

// ---- __syncthreads_count / _and / _or over a per-thread predicate
extern "C" __global__ void block_votes(const int* pred, int* out) {
    const int p = pred[blockIdx.x * blockDim.x + threadIdx.x];
    const int count = __syncthreads_count(p);
    const int all = __syncthreads_and(p);
    const int any = __syncthreads_or(p);
    if (threadIdx.x == 0) {
        out[3 * blockIdx.x] = count;
        out[3 * blockIdx.x + 1] = all;
        out[3 * blockIdx.x + 2] = any;
    }
}

// ---- warp collectives; out has 10 values per thread
extern "C" __global__ void warp_ops(const float* x, const int* pred, float* out, unsigned* votes) {
    __shared__ float exchange[BLOCK];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int lane = threadIdx.x % 32;
    const float v = x[i];
    float* o = out + 11 * i;
    o[0] = __shfl_sync(0xffffffffu, v, 5);           // broadcast lane 5
    o[1] = __shfl_sync(0xffffffffu, v, lane + 3, 8);  // rotate within groups of 8
    o[2] = __shfl_up_sync(0xffffffffu, v, 2);
    o[3] = __shfl_down_sync(0xffffffffu, v, 4, 16);
    o[4] = __shfl_xor_sync(0xffffffffu, v, 1);
    float sum = v;                                      // butterfly reduction
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    o[5] = sum;
    double dv = (double)v;                              // 8-byte values shuffle too
    o[6] = (float)__shfl_down_sync(0xffffffffu, dv, 1);
    const int p = pred[i];
    votes[3 * i] = __ballot_sync(0xffffffffu, p);
    votes[3 * i + 1] = __any_sync(0xffffffffu, p);
    votes[3 * i + 2] = __all_sync(0xffffffffu, p);
    exchange[threadIdx.x] = v * 10.0f;
    __syncwarp();
    o[7] = exchange[(threadIdx.x & ~31) + (31 - lane)];  // mirrored lane of the same warp
    // Half-warp masks: each half shuffles among itself only.
    const unsigned half = lane < 16 ? 0x0000ffffu : 0xffff0000u;
    o[8] = __shfl_sync(half, v, lane < 16 ? 0 : 16);
    o[9] = (float)__popc(__activemask());
    o[10] = __shfl_xor_sync(0xffffffffu, v, 12, 8);  // may read an earlier group of 8, never a later one
}

// ---- atomics from every thread onto a few addresses
extern "C" __global__ void atomics(const int* x, int* i_sum, unsigned* u_sum, unsigned long long* ull_sum,
                                   float* f_sum, double* d_sum, int* i_max, int* i_min, int* cas_count,
                                   int* exch_last, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int v = x[i];
    atomicAdd(i_sum, v);
    atomicAdd(u_sum, (unsigned)v);
    atomicAdd(ull_sum, (unsigned long long)v);
    atomicAdd(f_sum, 0.5f);
    atomicAdd(d_sum, (double)v * 0.25);
    atomicMax(i_max, v);
    atomicMin(i_min, v);
    int old = *cas_count, seen;
    do { seen = old; old = atomicCAS(cas_count, seen, seen + 1); } while (old != seen);
    atomicExch(exch_last, 7);
}

// ---- math functions and intrinsics; out has 16 values per element
extern "C" __global__ void math(const float* x, float* out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float a = x[i], b = x[(i + 1) % n];
    float* o = out + 16 * i;
    o[0] = expf(a); o[1] = logf(fabsf(a) + 1.0f); o[2] = sqrtf(fabsf(a)); o[3] = rsqrtf(fabsf(a) + 1.0f);
    o[4] = fmaxf(a, b); o[5] = fminf(a, b); o[6] = __fmaf_rn(a, b, 1.0f); o[7] = max(a, b);
    o[8] = (float)min(i, 7); o[9] = __expf(a); o[10] = __saturatef(a); o[11] = (float)__float2int_rn(a * 3.0f);
    o[12] = __int_as_float(__float_as_int(a)); o[13] = tanhf(a); o[14] = floorf(a * 3.0f); o[15] = __fdividef(a, 3.0f);
}

// ---- CUDA's vector and half types: float4/float2 loads, half conversions and arithmetic
extern "C" __global__ void vectors(const float4* x4, const float2* x2, const __half* h, float* out, __half* hout, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float4 a = x4[i];
    const float2 b = x2[i];
    out[i] = a.x + 2.0f * a.y + 3.0f * a.z + 4.0f * a.w + b.x * b.y;
    hout[2 * i] = __hadd(h[i], __float2half(1.5f));
    hout[2 * i + 1] = __hfma(h[i], h[i], __float2half(0.25f));
}

// ---- the order in which threads (and blocks) run: each records its arrival number
extern "C" __global__ void arrival(int* counter, int* order) {
    order[blockIdx.x * blockDim.x + threadIdx.x] = atomicAdd(counter, 1);
}

// ---- poisoning also covers template instantiations' and namespace-scope shared arrays
__shared__ float namespace_shared[BLOCK];
namespace scoped { static __shared__ int namespace_static_shared[BLOCK]; }

template <typename T>
__global__ void template_shared_poisoned(T* out, float* ns_out, int* ns_static_out) {
    __shared__ T s[BLOCK];
    const int i = blockIdx.x * BLOCK + threadIdx.x;
    out[i] = s[threadIdx.x];
    ns_out[i] = namespace_shared[threadIdx.x];
    ns_static_out[i] = scoped::namespace_static_shared[threadIdx.x];
    __syncthreads();
    s[threadIdx.x] = T(1);
    namespace_shared[threadIdx.x] = 1.0f;
    scoped::namespace_static_shared[threadIdx.x] = 1;
}
