// Test kernels with misuse the emulator must report (and correct twins that must run).
// Barrier and shuffle errors are plain code bugs: they need no sanitizer.

// A divergent barrier: thread 5 returns early while the others wait.
extern "C" __global__ void early_return_before_barrier(float* y) {
    if (threadIdx.x == 5) return;
    __syncthreads();
    y[threadIdx.x] = 1.0f;
}

// Two branches wait at two different barriers.
extern "C" __global__ void different_barriers(float* y) {
    if (threadIdx.x < 16) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    y[threadIdx.x] = 1.0f;
}

// A warp sum whose last lanes exit before the shuffles (when n is not a multiple of 32).
extern "C" __global__ void warp_sum_after_exit(const float* x, float* y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float s = x[i];
    for (int offset = 16; offset > 0; offset /= 2) s += __shfl_down_sync(0xffffffffu, s, offset);
    if (threadIdx.x % 32 == 0) y[i / 32] = s;
}

// The correct twin: every lane takes part, out-of-range lanes contribute 0.
extern "C" __global__ void warp_sum(const float* x, float* y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    float s = i < n ? x[i] : 0.0f;
    for (int offset = 16; offset > 0; offset /= 2) s += __shfl_down_sync(0xffffffffu, s, offset);
    if (threadIdx.x % 32 == 0) y[i / 32] = s;
}

// Lanes 0-15 shuffle with a half-warp mask but read lane 20, outside it.
extern "C" __global__ void shuffle_outside_mask(float* y) {
    const int lane = threadIdx.x % 32;
    float v = (float)lane;
    if (lane < 16) v = __shfl_sync(0x0000ffffu, v, 20);
    else v = __shfl_sync(0xffff0000u, v, 20);
    y[threadIdx.x] = v;
}

extern "C" __global__ void assert_in_kernel(const int* x, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) assert(x[i] >= 0);
}

extern "C" __global__ void trap_in_kernel(const int* x, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n && x[i] < 0) __trap();
}

extern "C" __global__ void fill(float* y, float v, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = v;
}

// A wild pointer (the kind of bug ASan pins down) and unbounded recursion: without a sanitizer
// they must fail the launch, not kill Python.
extern "C" __global__ void wild_write(float* y, long long offset) {
    if (threadIdx.x == 3) y[offset] = 1.0f;
}

__device__ int recurse(volatile int* depth, int n) {
    volatile char frame[4096];
    frame[0] = (char)n;
    return n == 0 ? frame[0] : recurse(depth, n - 1) + frame[0];
}

extern "C" __global__ void stack_overflow(int* y, int n) {
    y[threadIdx.x] = recurse(y, n);
}
