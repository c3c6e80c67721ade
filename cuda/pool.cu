// Max and average pooling of x (planes, h, w) into y (planes, oh, ow), PyTorch's rules.
//
// Window (oy, ox) covers rows oy*sh - top + a*dh, a < kh (likewise columns); taps outside the
// input are padding (-inf for max, 0 for avg). One thread per output element in a grid-stride
// loop over the flat output: writes are fully coalesced, and neighbouring threads read
// neighbouring (stride-apart) inputs, so every input byte comes from DRAM about once and the
// overlap of windows is served by L1/L2. Pooling is memory bound: there is no shared-memory
// tile to amortise, the goal is DRAM bandwidth.
#include "common.cuh"

#define POOL_THREADS 256   // threads per block
#define POOL_MIN_BLOCKS 4  // 4 x 256 threads resident per SM (<= 64 registers): occupancy hides DRAM latency

// Plane and top-left input position (padded coordinates) of the window of flat output index i.
template <typename I>
__device__ __forceinline__ void window_origin(I i, I oh, I ow, int sh, int sw, int top, int left, I& plane,
                                              I& y0, I& x0) {
  const I ox = i % ow;
  const I rest = i / ow;
  plane = rest / oh;
  y0 = (rest - plane * oh) * sh - top;
  x0 = ox * sw - left;
}

// Max pooling. A tap replaces the running max when it is strictly greater or NaN (NaN
// propagates; its index is the last NaN's). The running index starts at the window's first
// in-bounds tap; a window with no in-bounds tap gives -inf and index -1.
template <typename T, typename I>
__global__ void __launch_bounds__(POOL_THREADS, POOL_MIN_BLOCKS)
max_pool2d(const T* __restrict__ x, T* __restrict__ y, long long* __restrict__ indices, I total,
           I h, I w, I oh, I ow, int kh, int kw, int sh, int sw, int dh, int dw, int top, int left,
           int with_indices) {
  typedef typename Acc<T>::type A;
  for (I i = (I)blockIdx.x * POOL_THREADS + threadIdx.x; i < total; i += (I)gridDim.x * POOL_THREADS) {
    I plane, y0, x0;
    window_origin<I>(i, oh, ow, sh, sw, top, left, plane, y0, x0);
    const int a0 = y0 < 0 ? (int)ceil_div<I>(-y0, dh) : 0;  // first tap row inside the input
    const int b0 = x0 < 0 ? (int)ceil_div<I>(-x0, dw) : 0;
    const T* src = x + plane * h * w;
    A best = negative_infinity<A>();
    long long best_index = -1;
    if (a0 < kh && b0 < kw && y0 + (I)a0 * dh < h && x0 + (I)b0 * dw < w)
      best_index = (long long)(y0 + (I)a0 * dh) * w + (x0 + (I)b0 * dw);
    for (int a = a0; a < kh; ++a) {
      const I iy = y0 + (I)a * dh;
      if (iy >= h) break;
      for (int b = b0; b < kw; ++b) {
        const I ix = x0 + (I)b * dw;
        if (ix >= w) break;
        const A v = to_acc(src[iy * w + ix]);
        if (v > best || v != v) {
          best = v;
          best_index = (long long)iy * w + ix;
        }
      }
    }
    y[i] = from_acc<T>(best);
    if (with_indices) indices[i] = best_index;
  }
}

// Average pooling. Divisor: divisor_override when > 0; else the taps inside
// [-top, h + bottom) x [-left, w + right) when count_include_pad, else those inside the input.
template <typename T, typename I>
__global__ void __launch_bounds__(POOL_THREADS, POOL_MIN_BLOCKS)
avg_pool2d(const T* __restrict__ x, T* __restrict__ y, I total, I h, I w, I oh, I ow, int kh, int kw,
           int sh, int sw, int top, int bottom, int left, int right, int count_include_pad,
           int divisor_override) {
  typedef typename Acc<T>::type A;
  for (I i = (I)blockIdx.x * POOL_THREADS + threadIdx.x; i < total; i += (I)gridDim.x * POOL_THREADS) {
    I plane, y0, x0;
    window_origin<I>(i, oh, ow, sh, sw, top, left, plane, y0, x0);
    const I y1 = y0 + kh < h + bottom ? y0 + kh : h + bottom;  // end of the counted window
    const I x1 = x0 + kw < w + right ? x0 + kw : w + right;
    const I iy0 = y0 > 0 ? y0 : 0, iy1 = y1 < h ? y1 : h;  // the part inside the input
    const I ix0 = x0 > 0 ? x0 : 0, ix1 = x1 < w ? x1 : w;
    const T* src = x + plane * h * w;
    A sum = 0;
    for (I iy = iy0; iy < iy1; ++iy)
      for (I ix = ix0; ix < ix1; ++ix) sum += to_acc(src[iy * w + ix]);
    I divisor = divisor_override > 0 ? (I)divisor_override
                : count_include_pad    ? (y1 - y0) * (x1 - x0)
                                       : (iy1 - iy0) * (ix1 - ix0);
    if (divisor < 1) divisor = 1;  // unreachable with pads <= kernel/2; never divide by zero
    y[i] = from_acc<T>(sum / (A)divisor);
  }
}
