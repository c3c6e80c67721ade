// pad2d: y (planes, h + top + bottom, w + left + right) from x (planes, h, w), and its gradient.
//
// One thread per output element, grid-stride loop over the flat output, so consecutive threads
// write consecutive addresses and read consecutive addresses inside the interior. Every mode is
// an index map (common.cuh: source_index); "constant" positions get `value`. The gradient is a
// gather: one thread per input element sums the padded positions that copied it (fold_runs), in a
// fixed order: no atomics, the same bits in every thread order.
#include "common.cuh"

#define PAD_THREADS 256   // threads per block
#define PAD_MIN_BLOCKS 4  // 4 x 256 threads resident per SM (<= 64 registers): occupancy hides DRAM latency

template <typename T, typename I>
__global__ void __launch_bounds__(PAD_THREADS, PAD_MIN_BLOCKS)
pad2d(const T* __restrict__ x, T* __restrict__ y, I total, I h, I w, I oh, I ow, I top, I left,
      int mode, double value) {
  typedef typename Acc<T>::type A;
  const T fill = from_acc<T>((A)value);
  for (I i = (I)blockIdx.x * PAD_THREADS + threadIdx.x; i < total; i += (I)gridDim.x * PAD_THREADS) {
    const I ox = i % ow;
    const I rest = i / ow;
    const I oy = rest % oh;
    const I plane = rest / oh;
    const I sy = source_index<I>(oy - top, h, mode);
    const I sx = source_index<I>(ox - left, w, mode);
    y[i] = (sy >= 0 && sx >= 0) ? x[(plane * h + sy) * w + sx] : fill;
  }
}

// The padded positions along one axis (-before <= p < size + after) that read input position i,
// as 3 runs [lo[r], hi[r]) in increasing order (an empty run has lo == hi): the one before the
// input, i itself, the one after. reflect: -i (1 <= i <= before) and 2*(size-1) - i (when inside
// the after pad); circular: i - size and i + size (when inside the pads); replicate: the edge
// elements take their whole pad; constant pads read no input.
template <typename I>
__device__ __forceinline__ void fold_runs(I i, I size, I before, I after, int mode, I (&lo)[3], I (&hi)[3]) {
  const bool reflect_before = mode == PAD_REFLECT && i >= 1 && i <= before;
  const bool wrap_before = mode == PAD_CIRCULAR && i - size >= -before;
  const bool reflect_after = mode == PAD_REFLECT && i <= size - 2 && 2 * (size - 1) - i < size + after;
  const bool wrap_after = mode == PAD_CIRCULAR && i + size < size + after;
  lo[0] = reflect_before ? -i : i - size;
  hi[0] = reflect_before || wrap_before ? lo[0] + 1 : lo[0];
  lo[2] = reflect_after ? 2 * (size - 1) - i : i + size;
  hi[2] = reflect_after || wrap_after ? lo[2] + 1 : lo[2];
  lo[1] = mode == PAD_REPLICATE && i == 0 ? -before : i;
  hi[1] = mode == PAD_REPLICATE && i == size - 1 ? size + after : i + 1;
}

// dx (planes, h, w) from dy (planes, oh, ow) = the gradient of pad2d's output.
template <typename T, typename I>
__global__ void __launch_bounds__(PAD_THREADS, PAD_MIN_BLOCKS)
pad2d_grad(const T* __restrict__ dy, T* __restrict__ dx, I total, I h, I w, I oh, I ow, I top, I left, int mode) {
  typedef typename Acc<T>::type A;
  const I bottom = oh - h - top, right = ow - w - left;
  for (I i = (I)blockIdx.x * PAD_THREADS + threadIdx.x; i < total; i += (I)gridDim.x * PAD_THREADS) {
    const I ix = i % w;
    const I rest = i / w;
    const I iy = rest % h;
    const I plane = rest / h;
    I y_lo[3], y_hi[3], x_lo[3], x_hi[3];
    fold_runs<I>(iy, h, top, bottom, mode, y_lo, y_hi);
    fold_runs<I>(ix, w, left, right, mode, x_lo, x_hi);
    const T* src = dy + plane * oh * ow;
    A sum = 0;
    #pragma unroll
    for (int ry = 0; ry < 3; ++ry)
      for (I py = y_lo[ry]; py < y_hi[ry]; ++py)
        #pragma unroll
        for (int rx = 0; rx < 3; ++rx)
          for (I px = x_lo[rx]; px < x_hi[rx]; ++px) sum += to_acc(src[(py + top) * ow + px + left]);
    dx[i] = from_acc<T>(sum);
  }
}
