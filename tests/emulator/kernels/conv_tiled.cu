// Test kernel: 2-D cross-correlation, stride 1, no padding ("valid"), one output pixel per thread.
// Input tiles of (TILE + K - 1)^2 pixels go through shared memory, one channel at a time.
// Planted bugs for the emulator's tests, selected by macros:
//   SKIP_SYNC_AFTER_LOAD  the barrier after the tile load is missing
//   SHORT_HALO            the tile load stops one row short of the halo
#define TILE 16

template <int K>
__global__ void conv_tiled(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y,
                           int C, int H, int W, int F) {
    constexpr int IN_TILE = TILE + K - 1;
    __shared__ float tile[IN_TILE][IN_TILE];
    const int oh = H - K + 1, ow = W - K + 1;
    const int n = blockIdx.z / F, f = blockIdx.z % F;
    const int row0 = blockIdx.y * TILE, col0 = blockIdx.x * TILE;  // top-left output of this block
    const int r = row0 + threadIdx.y, c = col0 + threadIdx.x;
#ifdef SHORT_HALO
    constexpr int LOAD_ROWS = IN_TILE - 1;
#else
    constexpr int LOAD_ROWS = IN_TILE;
#endif
    float acc = 0.0f;
    for (int ch = 0; ch < C; ++ch) {
        const float* plane = x + ((long long)n * C + ch) * H * W;
        for (int i = threadIdx.y; i < LOAD_ROWS; i += TILE)
            for (int j = threadIdx.x; j < IN_TILE; j += TILE) {
                int gr = row0 + i, gc = col0 + j;
                tile[i][j] = (gr < H && gc < W) ? plane[gr * W + gc] : 0.0f;
            }
#ifndef SKIP_SYNC_AFTER_LOAD
        __syncthreads();
#endif
        const float* wf = w + ((long long)f * C + ch) * K * K;
#pragma unroll
        for (int ki = 0; ki < K; ++ki)
#pragma unroll
            for (int kj = 0; kj < K; ++kj)
                acc = __fmaf_rn(tile[threadIdx.y + ki][threadIdx.x + kj], wf[ki * K + kj], acc);
        __syncthreads();
    }
    if (r < oh && c < ow) y[(((long long)n * F + f) * oh + r) * ow + c] = acc;
}
