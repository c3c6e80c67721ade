// Tensor-core implicit-GEMM convolution (WMMA): per group g, Y_g (M x N) = W_g (M x K) * X_g (K x N)
// + bias, with M = F/groups filters, N = n*oh*ow output pixels and K = C/groups*kh*kw taps, as in
// conv_implicit_gemm.cu. float16 multiplies on the tensor cores in float16 (16x16x16 fragments) into
// float32 accumulators; float32 in TF32 (16x16x8 fragments, inputs rounded with __float_to_tf32), on
// sm_80 and newer only, and only when the caller asked for precision="tf32" (the launcher's rule).
//
// Tiling: a block of TC_THREADS = 8 warps computes a BM x TC_BN tile of Y_g, BM = 128 (TC_BM_WIDE) or,
// for groups of at most 64 filters, 64 (TC_BM_NARROW), TC_BN = 128; the warps form a
// TC_WARPS_M x TC_WARPS_N = 2 x 4 grid, each owning (BM/2) x 32 outputs = (BM/32) x 2 accumulator
// fragments. K is walked in steps of TC_BK = 32.
// - Weights: wp (groups, M, Kp), Kp = K rounded up to TC_BK and zero-padded by the launcher, so each
//   tile row is TC_BK contiguous 16-byte-aligned values: copied global -> shared with 16-byte
//   __pipeline_memcpy_async (cp.async on sm_80+, a plain copy on sm_70) into a ring of TC_STAGES
//   buffers, issued TC_STAGES - 1 steps ahead. Rows past M are zero-filled.
// - im2col: gathered from x through registers (padding of every mode by index mapping), one k row per
//   warp-row of loads so that a warp reads 32 consecutive output pixels; double-buffered: the loads of
//   step k+1 are issued before the MMAs of step k and stored to shared after them.
// - Every shared row is padded by 16 bytes, so the 8 rows a fragment load reads at once fall on
//   distinct banks.
// - Epilogue: the accumulators go through shared memory (reusing the tile buffers); then each thread
//   adds the bias, converts and writes y (n, f, oh, ow) along pixels, so the stores coalesce.
// One __syncthreads per K step.
#include "common.cuh"
#include <mma.h>
#include <cuda_pipeline.h>

#define TC_BM_WIDE 128       // filters per block tile
#define TC_BM_NARROW 64      // filters per block tile when a group has at most 64
#define TC_BN 128            // output pixels per block tile
#define TC_BK 32             // taps per K step
#define TC_WARPS_M 2         // warps along M
#define TC_WARPS_N 4         // warps along N
#define TC_THREADS 256       // 32 * TC_WARPS_M * TC_WARPS_N
#define TC_STAGES 3          // weight tiles in flight
#define TC_ROW_PAD_BYTES 16  // padding of every shared-memory row

// Fragment types per element type; `available` is false where the architecture has none (TF32
// before sm_80; the CPU emulator plays an sm_90), and that instantiation of the kernel traps (the
// launcher never starts it).
template <typename T> struct TensorCoreFragments { static constexpr bool available = false; };

template <> struct TensorCoreFragments<__half> {
  static constexpr bool available = true;
  static constexpr int K = 16;
  typedef nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __half, nvcuda::wmma::row_major> A;
  typedef nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, __half, nvcuda::wmma::row_major> B;
  typedef nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> C;
  template <typename F> __device__ static void round(F&) {}
};

#if defined(GPUCONV_EMULATOR) || __CUDA_ARCH__ >= 800
template <> struct TensorCoreFragments<float> {
  static constexpr bool available = true;
  static constexpr int K = 8;
  typedef nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 8, nvcuda::wmma::precision::tf32,
                                 nvcuda::wmma::row_major> A;
  typedef nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 8, nvcuda::wmma::precision::tf32,
                                 nvcuda::wmma::row_major> B;
  typedef nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 8, float> C;
  template <typename F> __device__ static void round(F& f) {
    #pragma unroll
    for (int i = 0; i < f.num_elements; ++i) f.x[i] = nvcuda::wmma::__float_to_tf32(f.x[i]);
  }
};
#endif

// A position k along K as (input channel, kernel row, kernel column), moved forward by a fixed
// stride without divisions: the stride's part within a channel is < kh*kw, so each carry is <= 1.
template <typename I> struct TapCursor {
  I ci;
  int a, b;
  __device__ static TapCursor at(I k, I taps, int kw) {
    TapCursor t;
    t.ci = k / taps;
    const int tap = (int)(k - t.ci * taps);
    t.a = tap / kw;
    t.b = tap - t.a * kw;
    return t;
  }
  __device__ TapCursor plus(const TapCursor& s, int kh, int kw) const {
    TapCursor t;
    t.ci = ci + s.ci;
    t.a = a + s.a;
    t.b = b + s.b;
    if (t.b >= kw) t.b -= kw, ++t.a;
    if (t.a >= kh) t.a -= kh, ++t.ci;
    return t;
  }
};

template <typename T, typename I, int BM>
__device__ __forceinline__ void conv_tile_tc(const T* __restrict__ x, const T* __restrict__ wp,
                                             const T* __restrict__ bias, T* __restrict__ y, int has_bias, I n,
                                             I c, I h, I wd, I f, I oh, I ow, int kh, int kw, int groups, int sh,
                                             int sw, int dh, int dw, int top, int left, int mode) {
  typedef TensorCoreFragments<T> Frag;
  constexpr int LDA = TC_BK + TC_ROW_PAD_BYTES / (int)sizeof(T);  // shared row lengths, in elements
  constexpr int LDB = TC_BN + TC_ROW_PAD_BYTES / (int)sizeof(T);
  constexpr int LDC = TC_BN + TC_ROW_PAD_BYTES / (int)sizeof(float);
  constexpr int A_STAGE = BM * LDA, B_BUFFER = TC_BK * LDB;
  constexpr int WARP_M = BM / TC_WARPS_M, WARP_N = TC_BN / TC_WARPS_N;
  constexpr int FRAGS_M = WARP_M / 16, FRAGS_N = WARP_N / 16;
  constexpr int CHUNK = 16 / (int)sizeof(T);                      // values per 16-byte copy
  constexpr int A_COPIES = BM * (TC_BK / CHUNK) / TC_THREADS;  // copies per thread per stage
  constexpr int WARPS = TC_THREADS / 32;
  constexpr int B_ROWS = TC_BK / WARPS, B_COLS = TC_BN / 32;      // im2col values per thread: rows x cols
  static_assert(TC_THREADS == 32 * TC_WARPS_M * TC_WARPS_N && A_COPIES * TC_THREADS == BM * (TC_BK / CHUNK) &&
                B_ROWS * WARPS == TC_BK && TC_BK % Frag::K == 0 && TC_THREADS % TC_BN == 0, "tile shape");

  extern __shared__ __align__(128) unsigned char smem[];
  T* s_a = reinterpret_cast<T*>(smem);          // [TC_STAGES][BM][LDA] weights
  T* s_b = s_a + TC_STAGES * A_STAGE;            // [2][TC_BK][LDB] im2col
  float* s_c = reinterpret_cast<float*>(smem);  // [BM][LDC] accumulators, after the main loop

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int warp_m = warp / TC_WARPS_N, warp_n = warp % TC_WARPS_N;
  const I cg = c / groups, fg = f / groups;
  const I taps = (I)kh * kw, k_total = cg * taps, hw = h * wd, pixels = oh * ow, n_total = n * pixels;
  const I k_padded = ceil_div<I>(k_total, TC_BK) * TC_BK, steps = k_padded / TC_BK;
  const I m_tiles = ceil_div<I>(fg, BM);
  const int g = (int)(blockIdx.y / m_tiles);
  const I m0 = (blockIdx.y % m_tiles) * BM, n0 = (I)blockIdx.x * TC_BN;

  // The weight chunks this thread copies: tile row and column, and the row's start in wp (-1 past M).
  int a_dst[A_COPIES];
  I a_src[A_COPIES];
  #pragma unroll
  for (int j = 0; j < A_COPIES; ++j) {
    const int q = tid + TC_THREADS * j, row = q / (TC_BK / CHUNK), col = q % (TC_BK / CHUNK) * CHUNK;
    a_dst[j] = row * LDA + col;
    a_src[j] = m0 + row < fg ? ((I)g * fg + m0 + row) * k_padded + col : (I)-1;
  }
  auto copy_weights = [&](I step) {  // issue the copies of one step's weight tile, then commit
    if (step < steps) {
      T* stage = s_a + (int)(step % TC_STAGES) * A_STAGE;
      #pragma unroll
      for (int j = 0; j < A_COPIES; ++j) {
        const bool inside = a_src[j] >= 0;  // rows past M: 16 zero bytes, from an address that exists
        __pipeline_memcpy_async(stage + a_dst[j], wp + (inside ? a_src[j] + step * TC_BK : 0), 16, inside ? 0 : 16);
      }
    }
    __pipeline_commit();
  };

  // The output pixels whose im2col columns this thread gathers: x offset of the group's first
  // channel (-1 past N) and the padded-input origin of the window.
  I col_base[B_COLS], col_y[B_COLS], col_x[B_COLS];
  #pragma unroll
  for (int j = 0; j < B_COLS; ++j) {
    const I nn = n0 + lane + 32 * j;
    const I img = nn / pixels, p = nn - img * pixels, oy = p / ow;
    col_base[j] = nn < n_total ? (img * c + (I)g * cg) * hw : (I)-1;
    col_y[j] = oy * sh - top;
    col_x[j] = (p - oy * ow) * sw - left;
  }
  // This thread's first k row (warp, then every WARPS-th), advanced by TC_BK per step.
  TapCursor<I> k_row = TapCursor<I>::at(warp, taps, kw);
  const TapCursor<I> step_k = TapCursor<I>::at(TC_BK, taps, kw), row_k = TapCursor<I>::at(WARPS, taps, kw);
  T next_b[B_ROWS][B_COLS];
  auto gather = [&](I step) {  // global -> registers, zeros outside N and K
    TapCursor<I> t = k_row;
    #pragma unroll
    for (int i = 0; i < B_ROWS; ++i) {
      const I k = step * TC_BK + warp + WARPS * i, x_channel = t.ci * hw;
      #pragma unroll
      for (int j = 0; j < B_COLS; ++j) {
        T v = from_acc<T>(0.0f);
        if (k < k_total && col_base[j] >= 0) {
          const I sy = source_index<I>(col_y[j] + (I)t.a * dh, h, mode);
          const I sx = source_index<I>(col_x[j] + (I)t.b * dw, wd, mode);
          if (sy >= 0 && sx >= 0) v = x[col_base[j] + x_channel + sy * wd + sx];
        }
        next_b[i][j] = v;
      }
      t = t.plus(row_k, kh, kw);
    }
    k_row = k_row.plus(step_k, kh, kw);
  };
  auto store_b = [&](int buffer) {  // registers -> shared: a warp writes 32 consecutive pixels
    #pragma unroll
    for (int i = 0; i < B_ROWS; ++i)
      #pragma unroll
      for (int j = 0; j < B_COLS; ++j) s_b[buffer * B_BUFFER + (warp + WARPS * i) * LDB + lane + 32 * j] = next_b[i][j];
  };

  typename Frag::C acc[FRAGS_M][FRAGS_N];
  #pragma unroll
  for (int i = 0; i < FRAGS_M; ++i)
    #pragma unroll
    for (int j = 0; j < FRAGS_N; ++j) nvcuda::wmma::fill_fragment(acc[i][j], 0.0f);

  for (int s = 0; s < TC_STAGES - 1; ++s) copy_weights(s);
  gather(0);
  store_b(0);
  for (I step = 0; step < steps; ++step) {
    __pipeline_wait_prior(TC_STAGES - 2);  // this thread's copies of this step's weights have landed
    __syncthreads();                       // everyone's, and the im2col tile; the oldest stage is free
    copy_weights(step + TC_STAGES - 1);
    const bool more = step + 1 < steps;
    if (more) gather(step + 1);
    const T* a_tile = s_a + (int)(step % TC_STAGES) * A_STAGE + warp_m * WARP_M * LDA;
    const T* b_tile = s_b + (int)(step & 1) * B_BUFFER + warp_n * WARP_N;
    #pragma unroll 2
    for (int kk = 0; kk < TC_BK; kk += Frag::K) {
      typename Frag::B fb[FRAGS_N];
      #pragma unroll
      for (int j = 0; j < FRAGS_N; ++j) {
        nvcuda::wmma::load_matrix_sync(fb[j], b_tile + kk * LDB + 16 * j, LDB);
        Frag::round(fb[j]);
      }
      #pragma unroll
      for (int i = 0; i < FRAGS_M; ++i) {
        typename Frag::A fa;
        nvcuda::wmma::load_matrix_sync(fa, a_tile + 16 * i * LDA + kk, LDA);
        Frag::round(fa);
        #pragma unroll
        for (int j = 0; j < FRAGS_N; ++j) nvcuda::wmma::mma_sync(acc[i][j], fa, fb[j], acc[i][j]);
      }
    }
    if (more) store_b((int)((step + 1) & 1));
  }
  __pipeline_wait_prior(0);  // nothing may land in the buffers the epilogue reuses
  __syncthreads();

  // Epilogue: accumulators -> shared, then bias, conversion and the NCHW scatter along pixels.
  float* c_warp = s_c + warp_m * WARP_M * LDC + warp_n * WARP_N;
  #pragma unroll
  for (int i = 0; i < FRAGS_M; ++i)
    #pragma unroll
    for (int j = 0; j < FRAGS_N; ++j)
      nvcuda::wmma::store_matrix_sync(c_warp + 16 * i * LDC + 16 * j, acc[i][j], LDC, nvcuda::wmma::mem_row_major);
  __syncthreads();
  const int col = tid % TC_BN;
  const I nn = n0 + col;
  if (nn >= n_total) return;
  const I img = nn / pixels, p = nn - img * pixels;
  T* out = y + (img * f + (I)g * fg) * pixels + p;
  const T* group_bias = bias + (I)g * fg;
  for (int row = tid / TC_BN; row < BM && m0 + row < fg; row += TC_THREADS / TC_BN) {
    const I m = m0 + row;
    const float b = has_bias ? to_acc(group_bias[m]) : 0.0f;
    out[m * pixels] = from_acc<T>(s_c[row * LDC + col] + b);
  }
}

// One block per BM x TC_BN output tile: grid x = ceil(N / TC_BN), y = groups * ceil(M / BM);
// TC_THREADS threads; dynamic shared memory max(TC_STAGES weight stages + 2 im2col buffers, the
// float accumulator tile), as the launcher computes it. 1 block/SM: <= 255 registers.
template <typename T, typename I, int BM>
__global__ void __launch_bounds__(TC_THREADS, 1)
conv2d_implicit_gemm_tc(const T* __restrict__ x, const T* __restrict__ wp, const T* __restrict__ bias,
                        T* __restrict__ y, int has_bias, I n, I c, I h, I wd, I f, I oh, I ow, int kh, int kw,
                        int groups, int sh, int sw, int dh, int dw, int top, int left, int mode) {
  if constexpr (TensorCoreFragments<T>::available)
    conv_tile_tc<T, I, BM>(x, wp, bias, y, has_bias, n, c, h, wd, f, oh, ow, kh, kw, groups, sh, sw, dh, dw, top, left,
                       mode);
  else
    __trap();
}
