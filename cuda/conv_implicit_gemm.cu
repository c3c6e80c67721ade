// Implicit-GEMM convolution: per group g, Y_g (M x N) = W_g (M x K) * X_g (K x N) + bias, with
// M = F/groups filters, N = n*oh*ow output pixels and K = C/groups*kh*kw taps. X_g is the im2col
// matrix, never stored: its tiles are gathered from x on the fly (padding of every mode by index
// mapping). The weights arrive transposed, wt (groups, K, M), so tile loads along M coalesce.
//
// Tiling (template parameters): a block of (BM/TM) x (BN/TN) threads computes a BM x BN tile of
// Y_g; each thread accumulates a TM x TN register tile. K is walked in steps of BK = threads/32
// (one warp per k row of each tile load). The BK x BM and BK x BN tiles sit in shared memory,
// double-buffered: the global loads of step k+1 are issued into registers before the FMAs of
// step k and stored to the other buffer after them, one barrier per step.
// A thread's TM rows are TM/4 runs of 4 consecutive rows, the runs BM/(TM/4) apart (likewise
// columns), so each run is one 16-byte-aligned vector read and a warp's reads of a k row fall
// on distinct banks (broadcast for the 2 rows a warp spans).
#include "common.cuh"

// Registers: 2 blocks/SM (<= 128 registers) for float tiles up to 4x8 with 32-bit indices; 1 block
// (<= 255) for 8x8 tiles, double, and 64-bit indices, which would spill at 128.
template <typename T, typename I, int BM, int BN, int TM, int TN>
__global__ void
__launch_bounds__((BM / TM) * (BN / TN), TM * TN >= 64 || sizeof(T) == 8 || sizeof(I) == 8 ? 1 : 2)
conv2d_implicit_gemm(const T* __restrict__ x, const T* __restrict__ wt, const T* __restrict__ bias,
                     T* __restrict__ y, int has_bias, I n, I c, I h, I wd, I f, I oh, I ow, int kh,
                     int kw, int groups, int sh, int sw, int dh, int dw, int top, int left,
                     int mode) {
  typedef typename Acc<T>::type A;
  constexpr int THREADS = (BM / TM) * (BN / TN);
  constexpr int BK = THREADS / 32;
  constexpr int LOADS_M = BM / 32;  // weight values each thread loads per k step
  constexpr int LOADS_N = BN / 32;  // im2col values each thread loads per k step
  constexpr int COLS = BN / TN;     // threads along N
  static_assert(BM % 32 == 0 && BN % 32 == 0 && TM % 4 == 0 && TN % 4 == 0, "tile shape");
  __shared__ __align__(16) A s_w[2][BK][BM];
  __shared__ __align__(16) A s_x[2][BK][BN];

  const int tid = threadIdx.x;
  const int lane = tid % 32;    // this thread's column in the tile loads
  const int k_row = tid / 32;   // this thread's k row in the tile loads
  const int t_row = tid / COLS, t_col = tid % COLS;  // register tile position
  const I cg = c / groups, fg = f / groups;
  const I taps = (I)kh * kw, k_total = cg * taps, hw = h * wd, pixels = oh * ow;
  const I n_total = n * pixels;
  const I m_tiles = ceil_div<I>(fg, BM);
  const int g = (int)(blockIdx.y / m_tiles);
  const I m0 = (blockIdx.y % m_tiles) * BM;
  const I n0 = (I)blockIdx.x * BN;

  // The output pixels whose im2col columns this thread gathers: x offset of the group's first
  // channel (-1 past N) and the padded-input origin of the window.
  I col_base[LOADS_N], col_y[LOADS_N], col_x[LOADS_N];
  #pragma unroll
  for (int j = 0; j < LOADS_N; ++j) {
    const I nn = n0 + lane + 32 * j;
    const I img = nn / pixels, p = nn - img * pixels, oy = p / ow;
    col_base[j] = nn < n_total ? (img * c + (I)g * cg) * hw : (I)-1;
    col_y[j] = oy * sh - top;
    col_x[j] = (p - oy * ow) * sw - left;
  }

  // This thread's k row of the next tile load, as (channel, tap row, tap column); advanced by BK
  // = (step_ci, step_a, step_b) per step with carries instead of divisions (step_b < kw and
  // step_a < kh, so each carry is at most 1).
  I k = k_row, ci = k / taps;
  int a = (int)((k - ci * taps) / kw), b = (int)(k - ci * taps - (I)a * kw);
  const I step_ci = BK / taps;
  const int step_tap = (int)(BK - step_ci * taps);
  const int step_a = step_tap / kw, step_b = step_tap - step_a * kw;

  A next_w[LOADS_M], next_x[LOADS_N];
  auto load_tile = [&]() {  // global -> registers, zeros outside M, N and K; then advance k
    const I x_channel = ci * hw;
    #pragma unroll
    for (int j = 0; j < LOADS_M; ++j) {
      const I m = m0 + lane + 32 * j;
      next_w[j] = (k < k_total && m < fg) ? to_acc(wt[((I)g * k_total + k) * fg + m]) : (A)0;
    }
    #pragma unroll
    for (int j = 0; j < LOADS_N; ++j) {
      A v = 0;
      if (k < k_total && col_base[j] >= 0) {
        const I sy = source_index<I>(col_y[j] + (I)a * dh, h, mode);
        const I sx = source_index<I>(col_x[j] + (I)b * dw, wd, mode);
        if (sy >= 0 && sx >= 0) v = to_acc(x[col_base[j] + x_channel + sy * wd + sx]);
      }
      next_x[j] = v;
    }
    k += BK;
    b += step_b;
    if (b >= kw) b -= kw, ++a;
    a += step_a;
    if (a >= kh) a -= kh, ++ci;
    ci += step_ci;
  };
  auto store_tile = [&](int buf) {  // registers -> shared: a warp writes 32 consecutive values
    #pragma unroll
    for (int j = 0; j < LOADS_M; ++j) s_w[buf][k_row][lane + 32 * j] = next_w[j];
    #pragma unroll
    for (int j = 0; j < LOADS_N; ++j) s_x[buf][k_row][lane + 32 * j] = next_x[j];
  };

  A acc[TM][TN];
  #pragma unroll
  for (int i = 0; i < TM; ++i)
    #pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0;

  load_tile();
  store_tile(0);
  __syncthreads();
  const I steps = ceil_div<I>(k_total, BK);
  for (I step = 0; step < steps; ++step) {
    const int buf = (int)(step & 1);
    if (step + 1 < steps) load_tile();
    #pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      A rm[TM], rn[TN];
      #pragma unroll
      for (int i = 0; i < TM; ++i) rm[i] = s_w[buf][kk][(i / 4) * (BM / (TM / 4)) + t_row * 4 + i % 4];
      #pragma unroll
      for (int j = 0; j < TN; ++j) rn[j] = s_x[buf][kk][(j / 4) * (BN / (TN / 4)) + t_col * 4 + j % 4];
      #pragma unroll
      for (int i = 0; i < TM; ++i)
        #pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += rm[i] * rn[j];
    }
    if (step + 1 < steps) store_tile(buf ^ 1);
    __syncthreads();
  }

  // Epilogue: bias, convert, scatter into y (n, f, oh, ow); consecutive threads write
  // consecutive runs of 4 pixels.
  #pragma unroll
  for (int j = 0; j < TN; ++j) {
    const I nn = n0 + (j / 4) * (BN / (TN / 4)) + t_col * 4 + j % 4;
    if (nn >= n_total) continue;
    const I img = nn / pixels, p = nn - img * pixels;
    T* out = y + img * f * pixels + p;
    #pragma unroll
    for (int i = 0; i < TM; ++i) {
      const I m = m0 + (i / 4) * (BM / (TM / 4)) + t_row * 4 + i % 4;
      if (m >= fg) continue;
      const I fo = (I)g * fg + m;
      const A b = has_bias ? to_acc(bias[fo]) : (A)0;
      out[fo * pixels] = from_acc<T>(acc[i][j] + b);
    }
  }
}
