// The second pass of split-K (igemm_core.cuh): out[i] = partial[0][i] + partial[1][i] + ... +
// partial[splits-1][i] (+ bias[(i / bias_period) % bias_count]), summed in split order in the
// accumulation type, then converted to T. A fixed order and no atomics: the same bits in every run.
//
// One thread per result element, grid-stride loop over the flat result: every read of a split's
// slice and every write is fully coalesced. Memory bound: (splits + 1) values moved per element.
#include "common.cuh"

#define REDUCE_THREADS 256   // threads per block
#define REDUCE_MIN_BLOCKS 4  // 4 x 256 threads resident per SM (<= 64 registers): occupancy hides DRAM latency

template <typename T, typename I>
__global__ void __launch_bounds__(REDUCE_THREADS, REDUCE_MIN_BLOCKS)
splitk_reduce(const typename Acc<T>::type* __restrict__ partial, const T* __restrict__ bias, T* __restrict__ out,
              I total, int splits, int has_bias, I bias_period, I bias_count) {
  typedef typename Acc<T>::type A;
  for (I i = (I)blockIdx.x * REDUCE_THREADS + threadIdx.x; i < total; i += (I)gridDim.x * REDUCE_THREADS) {
    A sum = partial[i];
    for (int s = 1; s < splits; ++s) sum += partial[(I)s * total + i];
    if (has_bias) sum += to_acc(bias[(i / bias_period) % bias_count]);
    out[i] = from_acc<T>(sum);
  }
}
