// The emulator's <mma.h>: CUDA's warp matrix functions (nvcuda::wmma) for g++, found before CUDA's
// own mma.h (whose contents g++ never sees: they sit under __CUDACC__). The fragments CUDA offers for
// floating point, with float accumulators:
//   __half          m16n16k16, m32n8k16, m8n32k16
//   __nv_bfloat16   m16n16k16, m32n8k16, m8n32k16
//   precision::tf32 m16n16k8
// with CUDA's num_elements per lane and a public x[]. Which lane holds which element is drawn per
// launch (gpuconv/emulator/emu_wmma.h); load_matrix_sync, store_matrix_sync and mma_sync are warp
// collectives checked like every other one. Not provided: half accumulators, integer, sub-byte
// and double fragments.
#pragma once
#include <cuda_fp16.h>
#include <cuda_bf16.h>

namespace nvcuda {
namespace wmma {

struct row_major;
struct col_major;
struct matrix_a;
struct matrix_b;
struct accumulator;
namespace precision {
struct tf32;
}
enum layout_t { mem_row_major, mem_col_major };

// Round to the nearest TF32 value (10 mantissa bits), ties away from zero, like cvt.rna.tf32.f32.
inline float __float_to_tf32(float in) {
    unsigned bits = __float_as_uint(in);
    if ((bits & 0x7f800000u) != 0x7f800000u) bits += 0x1000u;  // infinities and NaN stay as they are
    return __uint_as_float(bits & 0xffffe000u);
}

template <typename T> struct helper_traits {
    typedef T element_type;
    typedef T storage_element_type;
    typedef T fill_argument_type;
};
template <> struct helper_traits<precision::tf32> {
    typedef precision::tf32 element_type;
    typedef float storage_element_type;
    typedef float fill_argument_type;
};

template <typename T, int size, int packed_size = size> struct __align__(8) __frag_base {
    enum { num_elements = size };
    enum { num_storage_elements = packed_size };
    typedef T element_type;
    typedef typename helper_traits<T>::storage_element_type storage_element_type;
    storage_element_type x[num_storage_elements];
};

namespace emu {
template <typename U> struct use_code;
template <> struct use_code<matrix_a> { static constexpr int value = ::gpuconv_emu::kMatrixA; };
template <> struct use_code<matrix_b> { static constexpr int value = ::gpuconv_emu::kMatrixB; };
template <> struct use_code<accumulator> { static constexpr int value = ::gpuconv_emu::kAccumulator; };

template <typename T> struct element_code { static constexpr int value = -1; };
template <> struct element_code<__half> { static constexpr int value = ::gpuconv_emu::kHalf; };
template <> struct element_code<__nv_bfloat16> { static constexpr int value = ::gpuconv_emu::kBfloat16; };
template <> struct element_code<precision::tf32> { static constexpr int value = ::gpuconv_emu::kTf32; };
template <> struct element_code<float> { static constexpr int value = ::gpuconv_emu::kFloat; };

template <typename L> struct layout_code { static constexpr int value = -1; };
template <> struct layout_code<row_major> { static constexpr int value = ::gpuconv_emu::kRowMajor; };
template <> struct layout_code<col_major> { static constexpr int value = ::gpuconv_emu::kColMajor; };
template <> struct layout_code<void> { static constexpr int value = ::gpuconv_emu::kNoLayout; };

// CUDA's num_elements of each fragment; 0 where CUDA has none (or the emulator does not provide it).
constexpr int per_lane(int use, int m, int n, int k, int element) {
    using namespace ::gpuconv_emu;
    const bool m16n16k16 = m == 16 && n == 16 && k == 16, m32n8k16 = m == 32 && n == 8 && k == 16,
               m8n32k16 = m == 8 && n == 32 && k == 16, m16n16k8 = m == 16 && n == 16 && k == 8;
    if (use == kAccumulator) return element == kFloat && (m16n16k16 || m32n8k16 || m8n32k16 || m16n16k8) ? 8 : 0;
    if (element == kHalf) return m16n16k16 || m32n8k16 || m8n32k16 ? 16 : 0;
    if (element == kTf32) return m16n16k8 ? 4 : 0;
    if (element != kBfloat16) return 0;
    if (m16n16k16) return 8;
    if (m32n8k16) return use == kMatrixA ? 16 : 4;
    if (m8n32k16) return use == kMatrixA ? 4 : 16;
    return 0;
}
}  // namespace emu

template <typename Use, int m, int n, int k, typename T, typename Layout = void>
class fragment : public __frag_base<T, emu::per_lane(emu::use_code<Use>::value, m, n, k, emu::element_code<T>::value)> {
    static_assert(emu::per_lane(emu::use_code<Use>::value, m, n, k, emu::element_code<T>::value) > 0,
                  "the emulator provides wmma fragments of __half and __nv_bfloat16 (m16n16k16, m32n8k16, m8n32k16) "
                  "and precision::tf32 (m16n16k8) with float accumulators");
    static_assert((emu::use_code<Use>::value == ::gpuconv_emu::kAccumulator) ==
                      (emu::layout_code<Layout>::value == ::gpuconv_emu::kNoLayout),
                  "matrix_a and matrix_b fragments take row_major or col_major; accumulators take no layout");

  public:
    static constexpr ::gpuconv_emu::FragmentKind emu_kind() {
        return {emu::use_code<Use>::value, m, n, k, emu::element_code<T>::value, emu::layout_code<Layout>::value,
                emu::per_lane(emu::use_code<Use>::value, m, n, k, emu::element_code<T>::value)};
    }
};

template <typename T, int size, int packed_size>
inline void fill_fragment(__frag_base<T, size, packed_size>& f, const typename helper_traits<T>::fill_argument_type& v) {
    for (int i = 0; i < f.num_storage_elements; ++i) f.x[i] = v;
}

template <typename Use, int m, int n, int k, typename T, typename Layout,
          typename = typename std::enable_if<!std::is_same<Use, accumulator>::value>::type>
inline void load_matrix_sync(fragment<Use, m, n, k, T, Layout>& a,
                             const typename helper_traits<T>::storage_element_type* p, unsigned ldm,
                             const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ::gpuconv_emu::matrix_memory_op(::gpuconv_emu::kMatrixLoad, a.emu_kind(), a.x, p, ldm,
                                    emu::layout_code<Layout>::value, file, line);
}

template <int m, int n, int k>
inline void load_matrix_sync(fragment<accumulator, m, n, k, float>& a, const float* p, unsigned ldm, layout_t layout,
                             const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ::gpuconv_emu::matrix_memory_op(::gpuconv_emu::kMatrixLoad, a.emu_kind(), a.x, p, ldm,
                                    layout == mem_row_major ? ::gpuconv_emu::kRowMajor : ::gpuconv_emu::kColMajor,
                                    file, line);
}

template <int m, int n, int k>
inline void store_matrix_sync(float* p, const fragment<accumulator, m, n, k, float>& a, unsigned ldm, layout_t layout,
                              const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ::gpuconv_emu::matrix_memory_op(::gpuconv_emu::kMatrixStore, a.emu_kind(), const_cast<float*>(a.x), p, ldm,
                                    layout == mem_row_major ? ::gpuconv_emu::kRowMajor : ::gpuconv_emu::kColMajor,
                                    file, line);
}

template <int m, int n, int k, typename T, typename LayoutA, typename LayoutB>
inline void mma_sync(fragment<accumulator, m, n, k, float>& d, const fragment<matrix_a, m, n, k, T, LayoutA>& a,
                     const fragment<matrix_b, m, n, k, T, LayoutB>& b, const fragment<accumulator, m, n, k, float>& c,
                     const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    const ::gpuconv_emu::FragmentKind kinds[4] = {d.emu_kind(), a.emu_kind(), b.emu_kind(), c.emu_kind()};
    void* const storage[4] = {d.x, const_cast<void*>(static_cast<const void*>(a.x)),
                              const_cast<void*>(static_cast<const void*>(b.x)),
                              const_cast<void*>(static_cast<const void*>(c.x))};
    ::gpuconv_emu::matrix_mma_op(kinds, storage, file, line);
}

}  // namespace wmma
}  // namespace nvcuda
