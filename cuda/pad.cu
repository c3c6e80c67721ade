// pad2d: y (planes, h + top + bottom, w + left + right) from x (planes, h, w).
//
// One thread per output element, grid-stride loop over the flat output, so consecutive threads
// write consecutive addresses and read consecutive addresses inside the interior. Every mode is
// an index map (common.cuh: source_index); "constant" positions get `value`.
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
