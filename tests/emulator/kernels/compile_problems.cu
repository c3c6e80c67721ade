// Test kernels the compile check must flag: a compiler warning and a register spill.
extern "C" __global__ void unused_variable(float* y) {
    int unused = 3;
    y[threadIdx.x] = 1.0f;
}

// 64 live accumulators under a 32-register cap (1024 threads, 2 blocks per SM) must spill.
extern "C" __global__ void __launch_bounds__(1024, 2) spills(const float* x, float* y, int n) {
    float acc[64];
#pragma unroll
    for (int j = 0; j < 64; ++j) acc[j] = x[j * n + threadIdx.x];
    for (int k = 0; k < n; ++k) {
#pragma unroll
        for (int j = 0; j < 64; ++j) acc[j] = acc[j] * acc[(j + 1) & 63] + x[k];
    }
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < 64; ++j) s += acc[j] * j;
    y[threadIdx.x] = s;
}
