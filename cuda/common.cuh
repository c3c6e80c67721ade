// Shared by every kernel: accumulation types, element conversions and the padding index map.
//
// Kernels are templates over the element type T (float, double, __half) and the index type
// I (int when every tensor of the call is under 2^31 bytes, long long otherwise; the launcher
// in gpuconv/backends/cuda.py chooses per call). float16 is stored as __half and computed in
// float32. No standard headers: the same file also compiles on the CPU emulator.
#pragma once
#include <cuda_fp16.h>

// Accumulation (and shared-memory) type of element type T.
template <typename T> struct Acc { typedef T type; };
template <> struct Acc<__half> { typedef float type; };

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }

template <typename T> __device__ __forceinline__ T from_acc(typename Acc<T>::type v) { return v; }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }

template <typename A> __device__ __forceinline__ A negative_infinity();
template <> __device__ __forceinline__ float negative_infinity<float>() { return -__uint_as_float(0x7f800000u); }
template <> __device__ __forceinline__ double negative_infinity<double>() {
  return -__longlong_as_double(0x7ff0000000000000LL);
}

// Padding modes, numbered as gpuconv.backends.cuda passes them (pad2d's "constant" is ZEROS).
enum PadMode { PAD_ZEROS = 0, PAD_REFLECT = 1, PAD_REPLICATE = 2, PAD_CIRCULAR = 3 };

// Source index of position i along an axis of `size` elements, or -1 where position i reads
// the constant pad. The geometry rules keep reflect pads < size and circular pads <= size, so
// one reflection or wrap suffices; anything farther out (never used by a valid output, but
// touched by tiles that overhang the output) also maps to -1, so no read is ever out of bounds.
template <typename I> __device__ __forceinline__ I source_index(I i, I size, int mode) {
  if (i >= 0 && i < size) return i;
  I j = -1;
  if (mode == PAD_REFLECT) j = i < 0 ? -i : 2 * (size - 1) - i;
  else if (mode == PAD_REPLICATE) j = i < 0 ? 0 : size - 1;
  else if (mode == PAD_CIRCULAR) j = i < 0 ? i + size : i - size;
  return (j >= 0 && j < size) ? j : -1;
}

template <typename I> __device__ __forceinline__ I ceil_div(I a, I b) { return (a + b - 1) / b; }
