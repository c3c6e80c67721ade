// Weight gradient of a zero-padded convolution, one GEMM per group g, reducing over the output pixels:
//
//   dW_g (F/g x C/g*kh*kw) = dY_g (F/g x K) * im2col(X_g)^T (K x C/g*kh*kw),  K = n*oh*ow,
//
// row m = filter, column (ci, a, b) = (channel, tap row, tap column), k = (img, oy, ox):
// A[k][m] = dy[img, g*F/g + m, oy, ox], B[k][(ci, a, b)] = x[img, g*C/g + ci, oy*sh - top + a*dh,
// ox*sw - left + b*dw] (0 outside the input). Neither matrix is stored.
//
// K is long (every output pixel of every image) and M x N small, so the grid alone rarely fills a
// GPU: split-K (igemm_core.cuh) gives each of grid.z blocks a k range; each writes its partial tile
// to scratch and splitk_reduce.cu adds the splits in a fixed order (no atomics).
//
// Tiling: a block of (BM/TM) x (BN/TN) = 256 threads computes a BM x BN tile (igemm_core.cuh), K
// walked in steps of WGRAD_BK. Both operands are contiguous along k (consecutive output pixels), so
// the loads run along k: lane % WGRAD_BK is a thread's k, and WGRAD_ROWS = 256 / WGRAD_BK threads
// load consecutive M rows (N columns) at once, half a warp reading 16 consecutive pixels. Shared rows
// are padded by WGRAD_PAD values (keeping the 16-byte alignment of the vector reads), which spreads
// those transposing stores over the banks (2-way conflicts instead of 16-way).
#include "igemm_core.cuh"

#define WGRAD_BK 16   // k values per step: a half warp loads 16 consecutive output pixels
#define WGRAD_PAD 4   // shared row padding, in values

// Registers as in conv_implicit_gemm.cu: 2 blocks/SM (<= 128 registers) for float 4x4 tiles with
// 32-bit indices; 1 block (<= 255) for 8x8 tiles, double and 64-bit indices.
template <typename T, typename I, int BM, int BN, int TM, int TN>
__global__ void __launch_bounds__((BM / TM) * (BN / TN),
                                  TM * TN >= 64 || sizeof(T) == 8 || sizeof(I) == 8 ? 1 : 2)
conv2d_grad_weight(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ dw,
                   typename Acc<T>::type* __restrict__ partial, I k_split, I n, I c, I h, I wd, I f, I oh, I ow,
                   int kh, int kw, int groups, int sh, int sw, int dil_h, int dil_w, int top, int left) {
  typedef typename Acc<T>::type A;
  typedef TileMap<BM, BN, TM, TN> Map;
  constexpr int BK = WGRAD_BK;
  constexpr int ROWS = Map::THREADS / BK;  // M rows (N columns) loaded at once
  constexpr int LOADS_M = BM / ROWS;       // dy values each thread loads per k step
  constexpr int LOADS_N = BN / ROWS;       // x values each thread loads per k step
  static_assert(Map::THREADS % BK == 0 && BM % ROWS == 0 && BN % ROWS == 0, "load shape");
  __shared__ __align__(16) A s_dy[2][BK][BM + WGRAD_PAD];
  __shared__ __align__(16) A s_x[2][BK][BN + WGRAD_PAD];

  const int tid = threadIdx.x;
  const int lane_k = tid % BK;  // this thread's k in the tile loads
  const int row = tid / BK;     // this thread's first M row / N column in the tile loads
  const I cg = c / groups, fg = f / groups;
  const I taps = (I)kh * kw, n_total = cg * taps, pixels = oh * ow, plane = h * wd;
  const I k_total = n * pixels;
  int g;
  I m0, n0;
  tile_origin<I, BM, BN>(fg, g, m0, n0);
  I k_begin, k_end;
  split_k_range<I>(k_total, k_split, k_begin, k_end);

  // The columns (ci, a, b) this thread loads: offset of channel g*C/g + ci in an image (-1 past N)
  // and the tap's offsets from the window origin.
  I col_channel[LOADS_N];
  int col_dy[LOADS_N], col_dx[LOADS_N];
  #pragma unroll
  for (int j = 0; j < LOADS_N; ++j) {
    const I nk = n0 + row + ROWS * j;
    const I ci = nk / taps;
    const int t = (int)(nk - ci * taps), a = t / kw, b = t - a * kw;
    col_channel[j] = nk < n_total ? ((I)g * cg + ci) * plane : (I)-1;
    col_dy[j] = a * dil_h - top;
    col_dx[j] = b * dil_w - left;
  }

  // This thread's k = (img, oy, ox), advanced by BK per step with carries (igemm_core.cuh).
  I k = k_begin + lane_k, img, oy, ox, step_img, step_oy, step_ox;
  split_index<I, I>(k, oh, ow, img, oy, ox);
  split_index<I, I>(BK, oh, ow, step_img, step_oy, step_ox);

  A next_dy[LOADS_M], next_x[LOADS_N];
  auto load = [&]() {  // global -> registers, zeros outside M, N and the split's k range; then advance k
    const bool k_valid = k < k_end;
    const I dy_pixel = k_valid ? (img * f + (I)g * fg) * pixels + oy * ow + ox : (I)0;
    #pragma unroll
    for (int j = 0; j < LOADS_M; ++j) {
      const I m = m0 + row + ROWS * j;
      next_dy[j] = (k_valid && m < fg) ? to_acc(dy[dy_pixel + m * pixels]) : (A)0;
    }
    const I x_image = k_valid ? img * c * plane : (I)0;
    #pragma unroll
    for (int j = 0; j < LOADS_N; ++j) {
      A v = 0;
      if (k_valid && col_channel[j] >= 0) {
        const I iy = oy * sh + col_dy[j], ix = ox * sw + col_dx[j];
        if (iy >= 0 && iy < h && ix >= 0 && ix < wd) v = to_acc(x[x_image + col_channel[j] + iy * wd + ix]);
      }
      next_x[j] = v;
    }
    k += BK;
    advance_index<I, I>(img, oy, ox, step_img, step_oy, step_ox, oh, ow);
  };
  auto store = [&](int buf) {  // registers -> shared, transposed: k rows of M (N) values
    #pragma unroll
    for (int j = 0; j < LOADS_M; ++j) s_dy[buf][lane_k][row + ROWS * j] = next_dy[j];
    #pragma unroll
    for (int j = 0; j < LOADS_N; ++j) s_x[buf][lane_k][row + ROWS * j] = next_x[j];
  };
  A acc[TM][TN];
  #pragma unroll
  for (int i = 0; i < TM; ++i)
    #pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0;
  auto multiply = [&](int buf) {
    multiply_tiles<BM, BN, TM, TN, BK, BM + WGRAD_PAD, BN + WGRAD_PAD>(acc, s_dy[buf], s_x[buf], tid);
  };
  double_buffered_k_loop<I>(ceil_div<I>(k_end - k_begin, BK), load, store, multiply);

  // Epilogue: dw (f, cg, kh, kw) is row-major (filter, column): consecutive threads write
  // consecutive runs of 4 columns.
  const I total = f * n_total;
  #pragma unroll
  for (int i = 0; i < TM; ++i) {
    const I m = m0 + Map::row(tid, i);
    if (m >= fg) continue;
    #pragma unroll
    for (int j = 0; j < TN; ++j) {
      const I nk = n0 + Map::col(tid, j);
      if (nk < n_total) store_result<T, I>(dw, partial, total, ((I)g * fg + m) * n_total + nk, acc[i][j]);
    }
  }
}

// ---- direct weight gradient: one block per (filter, channel) pair ------------------------------------
// For few filters or few taps per group (depthwise layers, single-channel images) a GEMM tile would be
// mostly empty (a depthwise 3x3 layer fills 1 x 9 of a 64 x 64 tile). Here a block reduces the kh*kw
// taps of one (filter f, channel ci) pair over its split's output pixels, WDIRECT_TAPS taps per pass:
// thread t takes pixels k_begin + t, + WDIRECT_THREADS, ... (consecutive threads read consecutive dy
// and, at stride 1, consecutive x; a pixel's taps share cache lines), accumulating one value per tap.
// The block then sums its threads in a fixed order (a shuffle tree per warp, then the warps in order)
// and writes one value per tap (or, with split-K, one partial sum for splitk_reduce). grid.x = F*C/g
// pairs, grid.z = splits.
#define WDIRECT_THREADS 256
#define WDIRECT_TAPS 9   // accumulators per thread (taps per pass): a 3x3 kernel in one pass

template <typename T, typename I>
__global__ void __launch_bounds__(WDIRECT_THREADS, 2)
conv2d_grad_weight_direct(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ dw,
                          typename Acc<T>::type* __restrict__ partial, I k_split, I n, I c, I h, I wd, I f, I oh,
                          I ow, int kh, int kw, int groups, int sh, int sw, int dil_h, int dil_w, int top,
                          int left) {
  typedef typename Acc<T>::type A;
  constexpr int WARPS = WDIRECT_THREADS / 32;
  __shared__ A s_warp[WARPS][WDIRECT_TAPS];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const I cg = c / groups, fg = f / groups;
  const I pair = blockIdx.x, fo = pair / cg, ci = pair - fo * cg;
  const int taps = kh * kw;
  const I pixels = oh * ow, plane = h * wd, k_total = n * pixels;
  const T* dy_f = dy + fo * pixels;                          // filter fo of image 0
  const T* x_c = x + ((fo / fg) * cg + ci) * plane;          // channel g*C/g + ci of image 0
  I k_begin, k_end;
  split_k_range<I>(k_total, k_split, k_begin, k_end);
  I step_img, step_oy, step_ox;  // WDIRECT_THREADS pixels, for advance_index
  split_index<I, I>(WDIRECT_THREADS, oh, ow, step_img, step_oy, step_ox);

  for (int tap0 = 0; tap0 < taps; tap0 += WDIRECT_TAPS) {
    int tap_y[WDIRECT_TAPS], tap_x[WDIRECT_TAPS];  // the taps' offsets from the window origin
    A acc[WDIRECT_TAPS];
    #pragma unroll
    for (int t = 0; t < WDIRECT_TAPS; ++t) {
      const int a = (tap0 + t) / kw, b = tap0 + t - a * kw;
      tap_y[t] = a * dil_h - top;
      tap_x[t] = b * dil_w - left;
      acc[t] = 0;
    }
    I k = k_begin + tid, img, oy, ox;
    split_index<I, I>(k, oh, ow, img, oy, ox);
    for (; k < k_end; k += WDIRECT_THREADS) {
      const A d = to_acc(dy_f[img * f * pixels + oy * ow + ox]);
      const T* x_img = x_c + img * c * plane;
      #pragma unroll
      for (int t = 0; t < WDIRECT_TAPS; ++t) {
        const I iy = oy * sh + tap_y[t], ix = ox * sw + tap_x[t];
        if (tap0 + t < taps && iy >= 0 && iy < h && ix >= 0 && ix < wd) acc[t] += d * to_acc(x_img[iy * wd + ix]);
      }
      advance_index<I, I>(img, oy, ox, step_img, step_oy, step_ox, oh, ow);
    }
    #pragma unroll
    for (int t = 0; t < WDIRECT_TAPS; ++t) {
      A v = acc[t];
      #pragma unroll
      for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
      if (lane == 0) s_warp[warp][t] = v;
    }
    __syncthreads();
    if (tid < WDIRECT_TAPS && tap0 + tid < taps) {
      A sum = s_warp[0][tid];
      for (int w = 1; w < WARPS; ++w) sum += s_warp[w][tid];
      store_result<T, I>(dw, partial, f * cg * taps, pair * taps + tap0 + tid, sum);
    }
    __syncthreads();  // s_warp is rewritten by the next pass
  }
}
