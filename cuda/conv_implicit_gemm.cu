// Implicit-GEMM convolution and its data gradient, one GEMM per group g:
//
//   forward   conv2d_implicit_gemm: Y_g (F/g x n*oh*ow) = W_g (F/g x K) * im2col(X_g) + bias,
//             K = C/g*kh*kw taps (channel, tap row, tap column);
//   gradient  conv2d_grad_input:    dX_g (C/g x n*h*w) = W_g^T (C/g x K') * gather(dY_g),
//             K' = F/g*kh*kw (filter, tap row, tap column): the transposed convolution.
//
// Neither gathered matrix is stored: its tiles are gathered on the fly. Forward: column (img, oy,
// ox), row (ci, a, b) reads x[img, ci, oy*sh - top + a*dh, ox*sw - left + b*dw] (padding of every
// mode by index mapping). Gradient: column (img, iy, ix), row (fi, a, b) reads dy[img, fi, oy, ox]
// where tap a reached input row iy from output row oy = (iy + top - a*dh) / sh, only when that
// division is exact and oy is in [0, oh) (likewise columns); other entries are 0. Writing
// iy + top = qy*sh + ry and a*dh = qa*sh + ra (0 <= ry, ra < sh), the division is exact exactly
// when ry == ra, and then oy = qy - qa: no division per element. Each output element is computed by
// one block (per split), so there are no atomics.
//
// The weights are read in their own layout w (F, C/groups, kh, kw), not transposed per call. Element
// (k, m) of group g's weight matrix, with k = hi*taps + tap, is w[g*M*K + hi*hi_stride + m*m_stride +
// tap]: forward, hi the channel (hi_stride = taps, m_stride = K: w[g*F/g + m][k]); gradient, hi the
// filter (hi_stride = M*taps, m_stride = taps: w[g*F/g + hi][m][tap]). Either way runs of consecutive
// k are consecutive in memory, so a weight tile load walks k fastest: 8 threads read 8 consecutive
// k of one row m, a warp 4 rows (4 runs of 8 values).
//
// Tiling (template parameters, igemm_core.cuh): a block of (BM/TM) x (BN/TN) threads computes a
// BM x BN tile; K is walked in steps of BK = threads/32 (one warp per k row of each gather load:
// 32 consecutive output pixels), double-buffered in shared memory. The weight tile's shared rows
// are padded by 32/BK values (W_PAD) so that a warp's stores (BK k rows x 32/BK columns) fall on
// 32 distinct banks. Split-K: grid.z splits K (igemm_core.cuh); splitk_reduce.cu adds the partial
// sums (and the bias) when there is more than one split.
#include "igemm_core.cuh"

// Registers: 2 blocks/SM (<= 128 registers) for float tiles up to 4x8 with 32-bit indices; 1 block
// (<= 255) for 8x8 tiles, double, and 64-bit indices, which would spill at 128.
#define IGEMM_MIN_BLOCKS(T, I, TM, TN) ((TM) * (TN) >= 64 || sizeof(T) == 8 || sizeof(I) == 8 ? 1 : 2)

// The convolution's geometry is always the forward's: x (n, c, h, wd), y (n, f, oh, ow), kernel
// (kh, kw), stride, dilation, top/left pads. INPUT_GRAD selects the GEMM: src is x (forward) or dy
// (gradient), dst is y or dx.
template <typename T, typename I, int BM, int BN, int TM, int TN, bool INPUT_GRAD>
__device__ __forceinline__ void conv_igemm(const T* __restrict__ src, const T* __restrict__ w,
                                           const T* __restrict__ bias, T* __restrict__ dst,
                                           typename Acc<T>::type* __restrict__ partial, I k_split, int has_bias,
                                           I n, I c, I h, I wd, I f, I oh, I ow, int kh, int kw, int groups, int sh,
                                           int sw, int dh, int dw, int top, int left, int mode) {
  typedef typename Acc<T>::type A;
  typedef TileMap<BM, BN, TM, TN> Map;
  constexpr int BK = Map::THREADS / 32;
  constexpr int W_PAD = 32 / BK;
  constexpr int LOADS_M = BM / 32;  // weight values each thread loads per k step
  constexpr int LOADS_N = BN / 32;  // gathered values each thread loads per k step
  __shared__ __align__(16) A s_w[2][BK][BM + W_PAD];
  __shared__ __align__(16) A s_g[2][BK][BN];

  const int tid = threadIdx.x;
  const int lane = tid % 32;    // this thread's column in the gather loads
  const int k_row = tid / 32;   // this thread's k row in the gather loads
  const int w_k = tid % BK;     // this thread's k row in the weight loads
  const int w_m = tid / BK;     // and its first column (then every 32nd)
  // Gathered tensor (channels, plane) and result tensor (channels, plane).
  const I src_c = INPUT_GRAD ? f : c, src_h = INPUT_GRAD ? oh : h, src_w = INPUT_GRAD ? ow : wd;
  const I dst_c = INPUT_GRAD ? c : f, dst_w = INPUT_GRAD ? wd : ow, dst_pixels = INPUT_GRAD ? h * wd : oh * ow;
  const I kc = src_c / groups, mg = dst_c / groups;  // K channels and M rows per group
  const I taps = (I)kh * kw, k_total = kc * taps, src_plane = src_h * src_w;
  const I n_total = n * dst_pixels;
  const I w_hi_stride = INPUT_GRAD ? mg * taps : taps, w_m_stride = INPUT_GRAD ? taps : k_total;
  int g;
  I m0, n0;
  tile_origin<I, BM, BN>(mg, g, m0, n0);
  I k_begin, k_end;
  split_k_range<I>(k_total, k_split, k_begin, k_end);

  // The result pixels whose gathered columns this thread loads: offset of the group's first
  // channel in src (-1 past N) and the pixel's row/column terms. Forward: the padded-input origin
  // of the window. Gradient: (qy, qx) and the phase ry*sw + rx of (iy + top, ix + left).
  I col_base[LOADS_N], col_y[LOADS_N], col_x[LOADS_N];
  int col_phase[LOADS_N];
  #pragma unroll
  for (int j = 0; j < LOADS_N; ++j) {
    const I nn = n0 + lane + 32 * j;
    const I img = nn / dst_pixels, p = nn - img * dst_pixels, py = p / dst_w, px = p - py * dst_w;
    col_base[j] = nn < n_total ? (img * src_c + (I)g * kc) * src_plane : (I)-1;
    if (INPUT_GRAD) {
      col_y[j] = (py + top) / sh;
      col_x[j] = (px + left) / sw;
      col_phase[j] = (int)(py + top - col_y[j] * sh) * sw + (int)(px + left - col_x[j] * sw);
    } else {
      col_y[j] = py * sh - top;
      col_x[j] = px * sw - left;
      col_phase[j] = 0;
    }
  }

  // This thread's k row of the next tile load, as (channel, tap row, tap column), advanced by BK
  // per step with carries (igemm_core.cuh).
  I k = k_begin + k_row, ci, step_ci;
  int a, b, step_a, step_b;
  split_index<I, int>(k, kh, kw, ci, a, b);
  split_index<I, int>(BK, kh, kw, step_ci, step_a, step_b);
  // The weight loads' k as (hi, tap) (igemm_core.cuh's split with a middle digit of size 1).
  I wk = k_begin + w_k, w_hi, step_w_hi;
  int w_mid, w_tap, step_w_mid, step_w_tap;
  split_index<I, int>(wk, 1, (int)taps, w_hi, w_mid, w_tap);
  split_index<I, int>(BK, 1, (int)taps, step_w_hi, step_w_mid, step_w_tap);
  const T* const w_group = w + (I)g * mg * k_total;

  A next_w[LOADS_M], next_g[LOADS_N];
  auto load = [&]() {  // global -> registers, zeros outside M, N and the split's k range; then advance k
    const bool w_valid = wk < k_end;
    #pragma unroll
    for (int j = 0; j < LOADS_M; ++j) {
      const I m = m0 + w_m + 32 * j;
      next_w[j] = (w_valid && m < mg) ? to_acc(w_group[w_hi * w_hi_stride + m * w_m_stride + w_tap]) : (A)0;
    }
    wk += BK;
    advance_index<I, int>(w_hi, w_mid, w_tap, step_w_hi, step_w_mid, step_w_tap, 1, (int)taps);
    const bool k_valid = k < k_end;
    const I channel = ci * src_plane;
    if (INPUT_GRAD) {
      const int qa = a * dh / sh, qb = b * dw / sw;
      const int tap_phase = (a * dh - qa * sh) * sw + (b * dw - qb * sw);
      #pragma unroll
      for (int j = 0; j < LOADS_N; ++j) {
        A v = 0;
        if (k_valid && col_base[j] >= 0 && col_phase[j] == tap_phase) {
          const I oy = col_y[j] - qa, ox = col_x[j] - qb;
          if (oy >= 0 && oy < src_h && ox >= 0 && ox < src_w) v = to_acc(src[col_base[j] + channel + oy * src_w + ox]);
        }
        next_g[j] = v;
      }
    } else {
      #pragma unroll
      for (int j = 0; j < LOADS_N; ++j) {
        A v = 0;
        if (k_valid && col_base[j] >= 0) {
          const I sy = source_index<I>(col_y[j] + (I)a * dh, src_h, mode);
          const I sx = source_index<I>(col_x[j] + (I)b * dw, src_w, mode);
          if (sy >= 0 && sx >= 0) v = to_acc(src[col_base[j] + channel + sy * src_w + sx]);
        }
        next_g[j] = v;
      }
    }
    k += BK;
    advance_index<I, int>(ci, a, b, step_ci, step_a, step_b, kh, kw);
  };
  auto store = [&](int buf) {  // registers -> shared: 32 distinct banks per warp (W_PAD)
    #pragma unroll
    for (int j = 0; j < LOADS_M; ++j) s_w[buf][w_k][w_m + 32 * j] = next_w[j];
    #pragma unroll
    for (int j = 0; j < LOADS_N; ++j) s_g[buf][k_row][lane + 32 * j] = next_g[j];
  };
  A acc[TM][TN];
  #pragma unroll
  for (int i = 0; i < TM; ++i)
    #pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0;
  auto multiply = [&](int buf) { multiply_tiles<BM, BN, TM, TN, BK, BM + W_PAD, BN>(acc, s_w[buf], s_g[buf], tid); };
  double_buffered_k_loop<I>(ceil_div<I>(k_end - k_begin, BK), load, store, multiply);

  // Epilogue: scatter into dst (n, dst_c, plane); consecutive threads write consecutive runs of 4
  // pixels. The bias is added here with one split, by splitk_reduce with several.
  const I total = n * dst_c * dst_pixels;
  #pragma unroll
  for (int j = 0; j < TN; ++j) {
    const I nn = n0 + Map::col(tid, j);
    if (nn >= n_total) continue;
    const I img = nn / dst_pixels, p = nn - img * dst_pixels;
    #pragma unroll
    for (int i = 0; i < TM; ++i) {
      const I m = m0 + Map::row(tid, i);
      if (m >= mg) continue;
      const I channel = (I)g * mg + m;
      const A b = !INPUT_GRAD && has_bias && gridDim.z == 1 ? to_acc(bias[channel]) : (A)0;
      store_result<T, I>(dst, partial, total, (img * dst_c + channel) * dst_pixels + p, acc[i][j] + b);
    }
  }
}

template <typename T, typename I, int BM, int BN, int TM, int TN>
__global__ void __launch_bounds__((BM / TM) * (BN / TN), IGEMM_MIN_BLOCKS(T, I, TM, TN))
conv2d_implicit_gemm(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                     T* __restrict__ y, typename Acc<T>::type* __restrict__ partial, I k_split, int has_bias, I n,
                     I c, I h, I wd, I f, I oh, I ow, int kh, int kw, int groups, int sh, int sw, int dh, int dw,
                     int top, int left, int mode) {
  conv_igemm<T, I, BM, BN, TM, TN, false>(x, w, bias, y, partial, k_split, has_bias, n, c, h, wd, f, oh, ow, kh, kw,
                                          groups, sh, sw, dh, dw, top, left, mode);
}

// dx (n, c, h, wd) of the zero-padded convolution whose output gradient is dy (n, f, oh, ow) and
// whose weights are w (f, c/groups, kh, kw).
template <typename T, typename I, int BM, int BN, int TM, int TN>
__global__ void __launch_bounds__((BM / TM) * (BN / TN), IGEMM_MIN_BLOCKS(T, I, TM, TN))
conv2d_grad_input(const T* __restrict__ dy, const T* __restrict__ w, T* __restrict__ dx,
                  typename Acc<T>::type* __restrict__ partial, I k_split, I n, I c, I h, I wd, I f, I oh, I ow,
                  int kh, int kw, int groups, int sh, int sw, int dh, int dw, int top, int left) {
  conv_igemm<T, I, BM, BN, TM, TN, true>(dy, w, nullptr, dx, partial, k_split, 0, n, c, h, wd, f, oh, ow, kh, kw,
                                         groups, sh, sw, dh, dw, top, left, PAD_ZEROS);
}
