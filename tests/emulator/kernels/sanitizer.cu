// Test kernels for the sanitizer modes: out-of-bounds accesses (ASan + UBSan) and a histogram
// without atomicAdd (TSan), each with a correct twin that must not be reported.

// Each thread reads its right neighbour: the last thread reads one past the end of x.
extern "C" __global__ void neighbour_oob(const float* x, float* y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i + 1] - x[i];
}

extern "C" __global__ void neighbour(const float* x, float* y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = (i + 1 < n ? x[i + 1] : x[i]) - x[i];
}

// Shift a block's values one slot right in dynamic shared memory: the last write is one past it.
extern "C" __global__ void shift_dynamic_shared_oob(const float* x, float* y, int n) {
    extern __shared__ float s[];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    s[threadIdx.x + 1] = i < n ? x[i] : 0.0f;
    __syncthreads();
    if (i < n) y[i] = s[threadIdx.x];
}

// The same shift in a static shared array.
#define SHIFT_BLOCK 64
extern "C" __global__ void shift_static_shared_oob(const float* x, float* y, int n) {
    __shared__ float s[SHIFT_BLOCK];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    s[threadIdx.x + 1] = i < n ? x[i] : 0.0f;
    __syncthreads();
    if (i < n && threadIdx.x > 0) y[i] = s[threadIdx.x];
}

extern "C" __global__ void shift_shared(const float* x, float* y, int n) {
    __shared__ float s[SHIFT_BLOCK + 1];
    extern __shared__ float d[];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    s[threadIdx.x + 1] = i < n ? x[i] : 0.0f;
    d[threadIdx.x + 1] = i < n ? x[i] : 0.0f;
    __syncthreads();
    if (i < n && threadIdx.x > 0) y[i] = s[threadIdx.x] + d[threadIdx.x];
}

extern "C" __global__ void histogram_racy(const int* x, unsigned* bins, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) bins[x[i]] += 1u;
}

extern "C" __global__ void histogram_atomic(const int* x, unsigned* bins, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) atomicAdd(&bins[x[i]], 1u);
}

// Block-level sum through shared memory with the barriers a race checker must accept.
extern "C" __global__ void shared_tree_sum(const float* x, float* y) {
    __shared__ float s[SHIFT_BLOCK];
    s[threadIdx.x] = x[blockIdx.x * SHIFT_BLOCK + threadIdx.x];
    __syncthreads();
    for (int half = SHIFT_BLOCK / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) s[threadIdx.x] += s[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) y[blockIdx.x] = s[0];
}

// The same sum with the barrier inside the loop forgotten.
extern "C" __global__ void shared_tree_sum_racy(const float* x, float* y) {
    __shared__ float s[SHIFT_BLOCK];
    s[threadIdx.x] = x[blockIdx.x * SHIFT_BLOCK + threadIdx.x];
    __syncthreads();
    for (int half = SHIFT_BLOCK / 2; half > 0; half /= 2)
        if (threadIdx.x < half) s[threadIdx.x] += s[threadIdx.x + half];
    if (threadIdx.x == 0) y[blockIdx.x] = s[0];
}
