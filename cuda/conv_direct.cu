// Direct convolution: y[n, f] = bias[f] + sum_{c in f's group, a, b} x[n, c, oy*sh - top + a*dh,
// ox*sw - left + b*dw] * w[f, c, a, b], padding of every mode applied by index mapping while
// loading (no padded copy of x).
//
// For few input channels per group (image filtering, depthwise/grouped layers, small stems):
// no GEMM reshaping, any stride and dilation.
//
// w_transposed = 1 runs the data gradient of a stride-1 convolution (the transposed convolution)
// on that convolution's own weights w0 (c, f/groups, kh, kw), read flipped and transposed in place:
// w[f, ci, a, b] = w0[g*cg + ci, f - g*fg, kh-1-a, kw-1-b] (no flipped copy per call).
//
// Tiling: a block of DIRECT_BLOCK_X x DIRECT_BLOCK_Y threads computes an output tile of
// DIRECT_TILE_H x DIRECT_TILE_W pixels of one image for FB filters of one group. Each thread
// owns DIRECT_ROWS_PER_THREAD output rows (DIRECT_BLOCK_Y apart) x FB filters in registers, so
// every input value read from shared memory feeds FB multiply-adds and every weight read feeds
// DIRECT_ROWS_PER_THREAD. A warp reads one tile row: consecutive columns (stride sw apart), so
// shared-memory reads are conflict-free at stride 1 and weight reads are broadcasts.
//
// STAGED = true (fast path): per input channel, the block stages the input tile plus its halo,
// in_h x in_w = ((TILE_H-1)*sh + (kh-1)*dh + 1) x ((TILE_W-1)*sw + (kw-1)*dw + 1) values, and
// the FB x kh x kw weights in dynamic shared memory. STAGED = false (fallback, when that tile
// would exceed the device's shared memory): the same loops read x and w from global memory.
#include "common.cuh"

#define DIRECT_BLOCK_X 32          // threads along output columns: one warp per tile row
#define DIRECT_BLOCK_Y 8           // threads along output rows
#define DIRECT_ROWS_PER_THREAD 2   // output rows per thread (register blocking)
#define DIRECT_THREADS (DIRECT_BLOCK_X * DIRECT_BLOCK_Y)
#define DIRECT_TILE_W DIRECT_BLOCK_X
#define DIRECT_TILE_H (DIRECT_BLOCK_Y * DIRECT_ROWS_PER_THREAD)

// Resident blocks per SM that ptxas must allow: 4 (<= 64 registers) for single-filter blocks,
// which are memory bound (depthwise) and need occupancy; 2 (<= 128) for FB = 4, which would spill.
// grid.x = tiles_x * tiles_y * n (one block per output tile of one image);
// grid.y strides over groups * ceil(fg / FB) filter batches.
template <typename T, typename I, int FB, bool STAGED>
__global__ void __launch_bounds__(DIRECT_THREADS, FB == 1 ? 4 : 2)
conv2d_direct(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
              T* __restrict__ y, int has_bias, int w_transposed, I c, I h, I wd, I f, I oh, I ow, int kh, int kw,
              int groups, int sh, int sw, int dh, int dw, int top, int left, int mode, int tiles_x,
              int tiles_y, int in_h, int in_w) {
  typedef typename Acc<T>::type A;
  extern __shared__ __align__(16) unsigned char direct_smem[];
  A* s_in = reinterpret_cast<A*>(direct_smem);  // [in_h][in_w] input tile + halo
  A* s_w = s_in + in_h * in_w;                   // [FB][kh * kw] weights of this channel

  const int tx = threadIdx.x, ty = threadIdx.y;
  const int tid = ty * DIRECT_BLOCK_X + tx;
  const int tile_x = blockIdx.x % tiles_x;
  const int tile_y = (blockIdx.x / tiles_x) % tiles_y;
  const I img = blockIdx.x / tiles_x / tiles_y;
  const I oy0 = (I)tile_y * DIRECT_TILE_H, ox0 = (I)tile_x * DIRECT_TILE_W;  // tile origin
  const I iy0 = oy0 * sh - top, ix0 = ox0 * sw - left;  // input origin of the tile (padded coords)
  const I cg = c / groups, fg = f / groups;
  const int taps = kh * kw;
  const int batches = (int)ceil_div<I>(fg, FB);
  // Where weight (filter, channel, tap) of a group is, from the group's first weight.
  const I w_filter_stride = w_transposed ? (I)taps : cg * taps, w_channel_stride = w_transposed ? fg * taps : (I)taps;
  auto w_tap = [&](int t) { return w_transposed ? taps - 1 - t : t; };

  for (int gb = blockIdx.y; gb < groups * batches; gb += gridDim.y) {
    const int g = gb / batches;
    const I f0 = (I)(gb % batches) * FB;  // first filter of the batch, within the group
    A acc[DIRECT_ROWS_PER_THREAD][FB];
    #pragma unroll
    for (int r = 0; r < DIRECT_ROWS_PER_THREAD; ++r)
      #pragma unroll
      for (int q = 0; q < FB; ++q) acc[r][q] = 0;

    for (I ci = 0; ci < cg; ++ci) {
      const T* plane = x + (img * c + g * cg + ci) * h * wd;
      const T* wc = w + (I)g * fg * cg * taps + f0 * w_filter_stride + ci * w_channel_stride;  // filter f0, channel ci
      if (STAGED) {
        for (int r = ty; r < in_h; r += DIRECT_BLOCK_Y) {
          const I sy = source_index<I>(iy0 + r, h, mode);
          for (int col = tx; col < in_w; col += DIRECT_BLOCK_X) {
            const I sx = source_index<I>(ix0 + col, wd, mode);
            s_in[r * in_w + col] = (sy >= 0 && sx >= 0) ? to_acc(plane[sy * wd + sx]) : (A)0;
          }
        }
        for (int i = tid; i < FB * taps; i += DIRECT_THREADS) {
          const int q = i / taps;
          s_w[i] = f0 + q < fg ? to_acc(wc[(I)q * w_filter_stride + w_tap(i - q * taps)]) : (A)0;
        }
        __syncthreads();
      }
      for (int a = 0; a < kh; ++a) {
        for (int b = 0; b < kw; ++b) {
          A wv[FB];
          #pragma unroll
          for (int q = 0; q < FB; ++q)
            wv[q] = STAGED ? s_w[q * taps + a * kw + b]
                           : (f0 + q < fg ? to_acc(wc[(I)q * w_filter_stride + w_tap(a * kw + b)]) : (A)0);
          #pragma unroll
          for (int r = 0; r < DIRECT_ROWS_PER_THREAD; ++r) {
            const int ty_r = ty + r * DIRECT_BLOCK_Y;  // this row's offset in the tile
            A v;
            if (STAGED) {
              v = s_in[(ty_r * sh + a * dh) * in_w + tx * sw + b * dw];
            } else {
              const I sy = source_index<I>(iy0 + ty_r * sh + a * dh, h, mode);
              const I sx = source_index<I>(ix0 + tx * sw + b * dw, wd, mode);
              v = (sy >= 0 && sx >= 0) ? to_acc(plane[sy * wd + sx]) : (A)0;
            }
            #pragma unroll
            for (int q = 0; q < FB; ++q) acc[r][q] += v * wv[q];
          }
        }
      }
      if (STAGED) __syncthreads();  // the next channel overwrites the tile
    }

    const I ox = ox0 + tx;
    #pragma unroll
    for (int r = 0; r < DIRECT_ROWS_PER_THREAD; ++r) {
      const I oy = oy0 + ty + r * DIRECT_BLOCK_Y;
      if (oy >= oh || ox >= ow) continue;
      #pragma unroll
      for (int q = 0; q < FB; ++q) {
        const I fo = g * fg + f0 + q;
        if (f0 + q >= fg) continue;
        const A b = has_bias ? to_acc(bias[fo]) : (A)0;
        y[((img * f + fo) * oh + oy) * ow + ox] = from_acc<T>(acc[r][q] + b);
      }
    }
  }
}
