// The register-tiled GEMM core shared by the implicit-GEMM kernels (the forward convolution,
// its data gradient and its weight gradient): C (M x N) = sum over k of A[k][m] * B[k][n].
// Each kernel brings its own tile loads (the gathers); this file holds what they have in common:
// which accumulators a thread owns, the multiply of one pair of shared-memory tiles, the
// double-buffered k loop, and split-K (a block's k range and where its result goes).
#pragma once
#include "common.cuh"

// A block of (BM/TM) x (BN/TN) threads holds a BM x BN tile of C; a thread accumulates TM x TN
// values: TM/4 runs of 4 consecutive rows, the runs BM/(TM/4) apart (likewise columns), so each
// run is one 16-byte vector read of shared memory and a warp's reads of a k row fall on distinct
// banks (broadcast for the rows a warp shares).
template <int BM, int BN, int TM, int TN>
struct TileMap {
  static constexpr int THREADS = (BM / TM) * (BN / TN);
  static constexpr int COLS = BN / TN;  // threads along N
  static_assert(BM % 32 == 0 && BN % 32 == 0 && TM % 4 == 0 && TN % 4 == 0, "tile shape");
  __device__ static int row(int tid, int i) { return (i / 4) * (BM / (TM / 4)) + (tid / COLS) * 4 + i % 4; }
  __device__ static int col(int tid, int j) { return (j / 4) * (BN / (TN / 4)) + (tid % COLS) * 4 + j % 4; }
};

// acc += the product of one pair of shared tiles, s_a[BK][LDA] (k rows of A, M along a row) and
// s_b[BK][LDB] (k rows of B); LDA >= BM and LDB >= BN are the padded row lengths (multiples of 4).
template <int BM, int BN, int TM, int TN, int BK, int LDA, int LDB, typename Acc_t>
__device__ __forceinline__ void multiply_tiles(Acc_t (&acc)[TM][TN], const Acc_t (*s_a)[LDA], const Acc_t (*s_b)[LDB],
                                               int tid) {
  typedef TileMap<BM, BN, TM, TN> Map;
  #pragma unroll
  for (int kk = 0; kk < BK; ++kk) {
    Acc_t rm[TM], rn[TN];
    #pragma unroll
    for (int i = 0; i < TM; ++i) rm[i] = s_a[kk][Map::row(tid, i)];
    #pragma unroll
    for (int j = 0; j < TN; ++j) rn[j] = s_b[kk][Map::col(tid, j)];
    #pragma unroll
    for (int i = 0; i < TM; ++i)
      #pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] += rm[i] * rn[j];
  }
}

// The k loop over `steps` tile pairs, double-buffered: load() brings the next pair of tiles from
// global memory into registers (and advances to the one after), store(buf) writes them to shared
// buffer buf, multiply(buf) accumulates from it. The global loads of step s+1 are in flight during
// the FMAs of step s; one barrier per step.
template <typename I, typename Load, typename Store, typename Multiply>
__device__ __forceinline__ void double_buffered_k_loop(I steps, Load& load, Store& store, Multiply& multiply) {
  load();
  store(0);
  __syncthreads();
  for (I step = 0; step < steps; ++step) {
    const int buf = (int)(step & 1);
    if (step + 1 < steps) load();
    multiply(buf);
    if (step + 1 < steps) store(buf ^ 1);
    __syncthreads();
  }
}

// This block's tile of C: group g, first row m0, first column n0 (grid.y = groups x M tiles of BM
// rows, m_per_group rows per group; grid.x = N tiles of BN columns).
template <typename I, int BM, int BN>
__device__ __forceinline__ void tile_origin(I m_per_group, int& g, I& m0, I& n0) {
  const I m_tiles = ceil_div<I>(m_per_group, BM);
  g = (int)(blockIdx.y / m_tiles);
  m0 = (blockIdx.y % m_tiles) * BM;
  n0 = (I)blockIdx.x * BN;
}

// A k index as a mixed-radix position (hi, mid, lo) with mid < mid_size and lo < lo_size: (channel,
// tap row, tap column) or (image, output row, output column).
template <typename I, typename J>
__device__ __forceinline__ void split_index(I k, J mid_size, J lo_size, I& hi, J& mid, J& lo) {
  hi = k / ((I)mid_size * lo_size);
  const I rest = k - hi * mid_size * lo_size;
  mid = (J)(rest / lo_size);
  lo = (J)(rest - (I)mid * lo_size);
}

// pos += step for positions split as above: since step's mid and lo digits are below mid_size and
// lo_size, each carry is at most 1, so a k loop advances without a division per step.
template <typename I, typename J>
__device__ __forceinline__ void advance_index(I& hi, J& mid, J& lo, I step_hi, J step_mid, J step_lo, J mid_size,
                                              J lo_size) {
  lo += step_lo;
  if (lo >= lo_size) lo -= lo_size, ++mid;
  mid += step_mid;
  if (mid >= mid_size) mid -= mid_size, ++hi;
  hi += step_hi;
}

// Split-K: the grid's z dimension splits K into gridDim.z ranges of k_split values (a multiple of
// the kernel's BK, chosen by the launcher so that every split has at least one k step). This
// block's range is [k_begin, k_end).
template <typename I>
__device__ __forceinline__ void split_k_range(I k_total, I k_split, I& k_begin, I& k_end) {
  k_begin = (I)blockIdx.z * k_split;
  k_end = k_total - k_begin < k_split ? k_total : k_begin + k_split;
}

// Where result element `index` (of `total`) goes: with one split, the finished value converted to
// T into out; with several, this split's partial sum into its slice partial[blockIdx.z][total],
// which splitk_reduce (splitk_reduce.cu) adds up in split order: no atomics, the same bits in every
// run and thread order.
template <typename T, typename I>
__device__ __forceinline__ void store_result(T* __restrict__ out, typename Acc<T>::type* __restrict__ partial,
                                             I total, I index, typename Acc<T>::type value) {
  if (gridDim.z > 1) partial[(I)blockIdx.z * total + index] = value;
  else out[index] = from_acc<T>(value);
}
