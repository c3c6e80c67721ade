// Max and average pooling of x (planes, h, w) into y (planes, oh, ow), PyTorch's rules, and their
// gradients with respect to x.
//
// Window (oy, ox) covers rows oy*sh - top + a*dh, a < kh (likewise columns); taps outside the
// input are padding (-inf for max, 0 for avg). Forward: one thread per output element in a
// grid-stride loop over the flat output: writes are fully coalesced, and neighbouring threads read
// neighbouring (stride-apart) inputs, so every input byte comes from DRAM about once and the
// overlap of windows is served by L1/L2. Gradients: gathers, one thread per input element, which
// sums the gradients of the windows covering it in a fixed order (window rows, then columns): no
// atomics, the same bits in every thread order. Pooling is memory bound: there is no shared-memory
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

// The windows along one axis that cover input position i: o in [o_lo, o_hi] whose tap
// i + pad - o*s = a*d has a < k (check a % d == 0 per window when d > 1). Empty when o_lo > o_hi.
template <typename I>
__device__ __forceinline__ void covering_windows(I i, I out, int k, int s, int d, int pad, I& o_lo, I& o_hi) {
  const I reach = i + pad - (I)(k - 1) * d;  // o*s >= reach
  o_lo = reach > 0 ? ceil_div<I>(reach, s) : 0;
  o_hi = (i + pad) / s;
  if (o_hi > out - 1) o_hi = out - 1;
}

// Max of one window, PyTorch's rule: a tap replaces the running max when it is strictly greater or
// NaN (NaN propagates; its index is the last NaN's). The running index starts at the window's first
// in-bounds tap; a window with no in-bounds tap gives -inf and index -1. src is the plane.
template <typename T, typename I>
__device__ __forceinline__ long long window_max(const T* __restrict__ src, I h, I w, I y0, I x0, int kh, int kw,
                                                int dh, int dw, typename Acc<T>::type& best) {
  const int a0 = y0 < 0 ? (int)ceil_div<I>(-y0, dh) : 0;  // first tap row inside the input
  const int b0 = x0 < 0 ? (int)ceil_div<I>(-x0, dw) : 0;
  best = negative_infinity<typename Acc<T>::type>();
  long long best_index = -1;
  if (a0 < kh && b0 < kw && y0 + (I)a0 * dh < h && x0 + (I)b0 * dw < w)
    best_index = (long long)(y0 + (I)a0 * dh) * w + (x0 + (I)b0 * dw);
  for (int a = a0; a < kh; ++a) {
    const I iy = y0 + (I)a * dh;
    if (iy >= h) break;
    for (int b = b0; b < kw; ++b) {
      const I ix = x0 + (I)b * dw;
      if (ix >= w) break;
      const typename Acc<T>::type v = to_acc(src[iy * w + ix]);
      if (v > best || v != v) {
        best = v;
        best_index = (long long)iy * w + ix;
      }
    }
  }
  return best_index;
}

// Divisor of the average window at (y0, x0), and its part inside the input [iy0, iy1) x [ix0, ix1):
// divisor_override when > 0; else the taps inside [-top, h + bottom) x [-left, w + right) when
// count_include_pad, else those inside the input. Never below 1.
template <typename I>
__device__ __forceinline__ I avg_window(I y0, I x0, I h, I w, int kh, int kw, int bottom, int right,
                                        int count_include_pad, int divisor_override, I& iy0, I& iy1, I& ix0, I& ix1) {
  const I y1 = y0 + kh < h + bottom ? y0 + kh : h + bottom;  // end of the counted window
  const I x1 = x0 + kw < w + right ? x0 + kw : w + right;
  iy0 = y0 > 0 ? y0 : 0, iy1 = y1 < h ? y1 : h;
  ix0 = x0 > 0 ? x0 : 0, ix1 = x1 < w ? x1 : w;
  I divisor = divisor_override > 0 ? (I)divisor_override
              : count_include_pad    ? (y1 - y0) * (x1 - x0)
                                     : (iy1 - iy0) * (ix1 - ix0);
  return divisor < 1 ? 1 : divisor;  // unreachable with pads <= kernel/2; never divide by zero
}

// Max pooling.
template <typename T, typename I>
__global__ void __launch_bounds__(POOL_THREADS, POOL_MIN_BLOCKS)
max_pool2d(const T* __restrict__ x, T* __restrict__ y, long long* __restrict__ indices, I total,
           I h, I w, I oh, I ow, int kh, int kw, int sh, int sw, int dh, int dw, int top, int left,
           int with_indices) {
  typedef typename Acc<T>::type A;
  for (I i = (I)blockIdx.x * POOL_THREADS + threadIdx.x; i < total; i += (I)gridDim.x * POOL_THREADS) {
    I plane, y0, x0;
    window_origin<I>(i, oh, ow, sh, sw, top, left, plane, y0, x0);
    A best;
    const long long best_index = window_max<T, I>(x + plane * h * w, h, w, y0, x0, kh, kw, dh, dw, best);
    y[i] = from_acc<T>(best);
    if (with_indices) indices[i] = best_index;
  }
}

// Average pooling.
template <typename T, typename I>
__global__ void __launch_bounds__(POOL_THREADS, POOL_MIN_BLOCKS)
avg_pool2d(const T* __restrict__ x, T* __restrict__ y, I total, I h, I w, I oh, I ow, int kh, int kw,
           int sh, int sw, int top, int bottom, int left, int right, int count_include_pad,
           int divisor_override) {
  typedef typename Acc<T>::type A;
  for (I i = (I)blockIdx.x * POOL_THREADS + threadIdx.x; i < total; i += (I)gridDim.x * POOL_THREADS) {
    I plane, y0, x0, iy0, iy1, ix0, ix1;
    window_origin<I>(i, oh, ow, sh, sw, top, left, plane, y0, x0);
    const I divisor = avg_window<I>(y0, x0, h, w, kh, kw, bottom, right, count_include_pad, divisor_override,
                                    iy0, iy1, ix0, ix1);
    const T* src = x + plane * h * w;
    A sum = 0;
    for (I iy = iy0; iy < iy1; ++iy)
      for (I ix = ix0; ix < ix1; ++ix) sum += to_acc(src[iy * w + ix]);
    y[i] = from_acc<T>(sum / (A)divisor);
  }
}

// Gradient of max pooling: dx[i] sums dy over the covering windows whose maximum is element i:
// the forward's indices when with_indices, else recomputed by the forward's rule (window_max).
template <typename T, typename I>
__global__ void __launch_bounds__(POOL_THREADS, POOL_MIN_BLOCKS)
max_pool2d_grad(const T* __restrict__ dy, const T* __restrict__ x, const long long* __restrict__ indices,
                T* __restrict__ dx, I total, I h, I w, I oh, I ow, int kh, int kw, int sh, int sw, int dh, int dw,
                int top, int left, int with_indices) {
  typedef typename Acc<T>::type A;
  for (I i = (I)blockIdx.x * POOL_THREADS + threadIdx.x; i < total; i += (I)gridDim.x * POOL_THREADS) {
    const I ix = i % w, rest = i / w, iy = rest % h, plane = rest / h;
    const long long self = (long long)iy * w + ix;
    I oy_lo, oy_hi, ox_lo, ox_hi;
    covering_windows<I>(iy, oh, kh, sh, dh, top, oy_lo, oy_hi);
    covering_windows<I>(ix, ow, kw, sw, dw, left, ox_lo, ox_hi);
    A sum = 0;
    for (I oy = oy_lo; oy <= oy_hi; ++oy) {
      if ((iy + top - oy * sh) % dh) continue;  // between two dilated taps: cannot pick i (a shortcut)
      for (I ox = ox_lo; ox <= ox_hi; ++ox) {
        if ((ix + left - ox * sw) % dw) continue;
        const I o = (plane * oh + oy) * ow + ox;
        A best;
        const long long picked = with_indices ? indices[o]
                                              : window_max<T, I>(x + plane * h * w, h, w, oy * sh - top,
                                                                 ox * sw - left, kh, kw, dh, dw, best);
        if (picked == self) sum += to_acc(dy[o]);
      }
    }
    dx[i] = from_acc<T>(sum);
  }
}

// Gradient of average pooling: dx[i] sums dy / divisor over the windows whose counted input part
// holds element i.
template <typename T, typename I>
__global__ void __launch_bounds__(POOL_THREADS, POOL_MIN_BLOCKS)
avg_pool2d_grad(const T* __restrict__ dy, T* __restrict__ dx, I total, I h, I w, I oh, I ow, int kh, int kw,
                int sh, int sw, int top, int bottom, int left, int right, int count_include_pad,
                int divisor_override) {
  typedef typename Acc<T>::type A;
  for (I i = (I)blockIdx.x * POOL_THREADS + threadIdx.x; i < total; i += (I)gridDim.x * POOL_THREADS) {
    const I ix = i % w, rest = i / w, iy = rest % h, plane = rest / h;
    I oy_lo, oy_hi, ox_lo, ox_hi, iy0, iy1, ix0, ix1;
    covering_windows<I>(iy, oh, kh, sh, 1, top, oy_lo, oy_hi);
    covering_windows<I>(ix, ow, kw, sw, 1, left, ox_lo, ox_hi);
    A sum = 0;
    for (I oy = oy_lo; oy <= oy_hi; ++oy)
      for (I ox = ox_lo; ox <= ox_hi; ++ox) {
        const I divisor = avg_window<I>(oy * sh - top, ox * sw - left, h, w, kh, kw, bottom, right,
                                        count_include_pad, divisor_override, iy0, iy1, ix0, ix1);
        sum += to_acc(dy[(plane * oh + oy) * ow + ox]) / (A)divisor;
      }
    dx[i] = from_acc<T>(sum);
  }
}
