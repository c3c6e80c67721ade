// The runtime side of nvcuda::wmma (the emulator's include/mma.h): which lane holds which element
// of a fragment, the warp-wide rules of load_matrix_sync / store_matrix_sync / mma_sync, and the
// product itself.
//
// CUDA leaves the lane <-> element mapping of a fragment unspecified. Here it is a random
// permutation per fragment kind, drawn at its first use in a launch from the launch's seed (the one
// that orders threads), so a kernel that depends on some particular mapping fails, while loops over
// x[] that treat every element alike keep working. Some fragments hold each element in several
// lanes (a 16x16 float16 matrix_a has 512 slots for 256 elements); mma_sync requires the copies to
// agree.
//
// Loads and stores are performed by each lane, for its own slots, once the whole warp has arrived,
// so ASan and TSan see every memory access from the CUDA thread that makes it. mma_sync runs in the
// scheduler once all 32 lanes have arrived: products exact, sums in double, rounded once to float
// (the hardware accumulates in float32 in an unspecified order: compare results with a tolerance).
// TF32 inputs count with their upper 19 bits only, as on the tensor cores: round them first with
// __float_to_tf32.
#pragma once
#include <initializer_list>

namespace gpuconv_emu {

enum MatrixUse : int { kMatrixA, kMatrixB, kAccumulator };
enum MatrixElement : int { kHalf, kBfloat16, kTf32, kFloat };
enum MatrixLayout : int { kRowMajor, kColMajor, kNoLayout };

struct FragmentKind {
    int use, m, n, k, element, layout;
    int per_lane;  // num_elements: the elements each lane holds
    int rows() const { return use == kMatrixB ? k : m; }
    int cols() const { return use == kMatrixA ? k : n; }
    bool operator==(const FragmentKind& o) const {
        return use == o.use && m == o.m && n == o.n && k == o.k && element == o.element && layout == o.layout &&
               per_lane == o.per_lane;
    }
};

inline unsigned element_bytes(int element) { return element == kHalf || element == kBfloat16 ? 2 : 4; }
inline const char* use_name(int use) {
    static const char* names[] = {"matrix_a", "matrix_b", "accumulator"};
    return names[use];
}
inline const char* layout_name(int layout) {
    static const char* names[] = {"row major", "column major", "no layout"};
    return names[layout];
}

constexpr int kMaxFragmentKinds = 64;
constexpr int kMaxSlots = 32 * 16;       // 32 lanes x at most 16 elements
constexpr int kMaxMatrixElements = 512;  // the largest operand: 32 x 16
struct FragmentMap {
    FragmentKind kind;
    unsigned short element[kMaxSlots];  // element (row * cols + col) held in slot lane * per_lane + i
};
inline FragmentMap g_fragment_maps[kMaxFragmentKinds];
inline int g_fragment_map_count = 0;

GPUCONV_EMU_RUNTIME inline void forget_fragment_maps() { g_fragment_map_count = 0; }

GPUCONV_EMU_RUNTIME inline unsigned long long mix64(unsigned long long& state) {  // splitmix64
    unsigned long long z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// The index of kind's mapping in this launch, drawn at its first use: a shuffle of the slots that
// depends only on the launch's seed and the kind, so a launch replays exactly.
GPUCONV_EMU_RUNTIME inline int fragment_map(const FragmentKind& kind) {
    for (int i = 0; i < g_fragment_map_count; ++i)
        if (g_fragment_maps[i].kind == kind) return i;
    if (g_fragment_map_count == kMaxFragmentKinds) fail_thread("more than %d kinds of wmma fragments", kMaxFragmentKinds);
    FragmentMap& map = g_fragment_maps[g_fragment_map_count];
    map.kind = kind;
    const unsigned slots = 32u * kind.per_lane, elements = kind.rows() * kind.cols();
    unsigned long long state = g.seed;
    for (int field : {kind.use, kind.m, kind.n, kind.k, kind.element, kind.layout}) state = state * 1000003u + field;
    for (unsigned s = 0; s < slots; ++s) map.element[s] = static_cast<unsigned short>(s);
    for (unsigned s = slots; s > 1; --s) {
        unsigned j = static_cast<unsigned>(mix64(state) % s);
        unsigned short tmp = map.element[s - 1];
        map.element[s - 1] = map.element[j];
        map.element[j] = tmp;
    }
    for (unsigned s = 0; s < slots; ++s) map.element[s] = static_cast<unsigned short>(map.element[s] % elements);
    return g_fragment_map_count++;
}

GPUCONV_EMU_RUNTIME inline unsigned slot_element(int map, unsigned slot) { return g_fragment_maps[map].element[slot]; }
GPUCONV_EMU_RUNTIME inline unsigned current_lane() { return g.current->lane; }

typedef unsigned short __attribute__((may_alias)) Bits16;
typedef unsigned __attribute__((may_alias)) Bits32;

// Wait with the rest of the warp at a matrix operation (no memory synchronisation: as on the GPU,
// data written by other lanes needs __syncwarp or __syncthreads first).
GPUCONV_EMU_RUNTIME inline void matrix_rendezvous(int op, const MatrixCall& call, const char* file, int line) {
    Thread* t = g.current;
    t->state = kAtWarp;
    t->kind = op;
    t->file = file;
    t->line = line;
    t->mask = 0xffffffffu;
    t->matrix = call;
    switch_to_host(&g.host, &t->fiber, false);
}

// load_matrix_sync / store_matrix_sync in one lane: the rules, the rendezvous, then this lane's slots.
inline void matrix_memory_op(int op, const FragmentKind& kind, void* storage, const void* memory, unsigned ldm,
                             int layout, const char* file, int line) {
    const unsigned bytes = element_bytes(kind.element);
    if (reinterpret_cast<uintptr_t>(memory) % 32)
        fail_thread("%s at %s:%d: pointer %p is not 256-bit (32-byte) aligned, as CUDA requires", collective_name(op),
                    file, line, memory);
    if (ldm * bytes % 16)
        fail_thread("%s at %s:%d: ldm = %u elements (%u bytes) is not a multiple of 16 bytes, as CUDA requires",
                    collective_name(op), file, line, ldm, ldm * bytes);
    const int map = fragment_map(kind);
    MatrixCall call = {memory, ldm, layout, {map, -1, -1, -1}, {storage, nullptr, nullptr, nullptr}};
    matrix_rendezvous(op, call, file, line);
    const unsigned lane = current_lane(), cols = kind.cols();
    unsigned char* fragment = static_cast<unsigned char*>(storage);
    const unsigned char* base = static_cast<const unsigned char*>(memory);
    for (int i = 0; i < kind.per_lane; ++i) {
        const unsigned e = slot_element(map, lane * kind.per_lane + i), r = e / cols, c = e % cols;
        const size_t offset = (layout == kRowMajor ? size_t(r) * ldm + c : size_t(c) * ldm + r) * bytes;
        unsigned char* element = const_cast<unsigned char*>(base) + offset;
        unsigned char* slot = fragment + i * bytes;
        unsigned char* to = op == kMatrixLoad ? slot : element;
        const unsigned char* from = op == kMatrixLoad ? element : slot;
        if (bytes == 2)
            *reinterpret_cast<Bits16*>(to) = *reinterpret_cast<const Bits16*>(from);
        else
            *reinterpret_cast<Bits32*>(to) = *reinterpret_cast<const Bits32*>(from);
    }
}

// mma_sync in one lane: the operands' mappings, then the rendezvous (the scheduler computes).
inline void matrix_mma_op(const FragmentKind* kinds, void* const* storage, const char* file, int line) {
    MatrixCall call = {nullptr, 0, kNoLayout, {}, {}};
    for (int i = 0; i < 4; ++i) {
        call.kinds[i] = fragment_map(kinds[i]);
        call.storage[i] = storage[i];
    }
    matrix_rendezvous(kMatrixMma, call, file, line);
}

GPUCONV_EMU_RUNTIME inline bool matrix_calls_agree(const Thread* first, const Thread* other) {
    const MatrixCall &a = first->matrix, &b = other->matrix;
    if (first->line != other->line || (first->file != other->file && strcmp(first->file, other->file) != 0)) {
        record_error(other, "%s at %s:%d, but lane %u is at %s:%d: all 32 lanes of a warp must reach the same call",
                     collective_name(other->kind), other->file, other->line, first->lane, first->file, first->line);
        return false;
    }
    bool same = a.memory == b.memory && a.ldm == b.ldm && a.layout == b.layout;
    for (int i = 0; i < 4; ++i) same = same && a.kinds[i] == b.kinds[i];
    if (!same) {
        record_error(other, "%s at %s:%d: this lane passes pointer %p, ldm %u, %s, but lane %u passes pointer %p, "
                     "ldm %u, %s: every lane of the warp must pass the same pointer, ldm and layout",
                     collective_name(other->kind), other->file, other->line, b.memory, b.ldm, layout_name(b.layout),
                     first->lane, a.memory, a.ldm, layout_name(a.layout));
        return false;
    }
    return true;
}

GPUCONV_EMU_RUNTIME inline double element_value(int element, unsigned bits) {
    switch (element) {
        case kHalf: {
            __half_raw raw;
            raw.x = static_cast<unsigned short>(bits);
            return __half2float(__half(raw));
        }
        case kBfloat16: return from_bits<float>(bits << 16);
        case kTf32: return from_bits<float>(bits & 0xffffe000u);  // the tensor cores read 19 bits
        default: return from_bits<float>(bits);
    }
}

// Operand `which` (0 d, 1 a, 2 b, 3 c) of the warp's mma_sync as a row-major matrix of doubles.
// False (with the error recorded) when two lanes hold different values for one element.
GPUCONV_EMU_RUNTIME inline bool gather_operand(Thread* lanes, int which, double* out) {
    const int map = lanes[0].matrix.kinds[which];
    const FragmentKind& kind = g_fragment_maps[map].kind;
    const unsigned bytes = element_bytes(kind.element), cols = kind.cols();
    unsigned short holder[kMaxMatrixElements];  // first slot seen holding each element
    unsigned raw[kMaxMatrixElements];
    for (int e = 0; e < kind.rows() * kind.cols(); ++e) holder[e] = 0xffff;
    for (unsigned slot = 0; slot < 32u * kind.per_lane; ++slot) {
        const unsigned lane = slot / kind.per_lane, i = slot % kind.per_lane, e = slot_element(map, slot);
        const unsigned char* x = static_cast<const unsigned char*>(lanes[lane].matrix.storage[which]) + i * bytes;
        const unsigned bits = bytes == 2 ? *reinterpret_cast<const Bits16*>(x) : *reinterpret_cast<const Bits32*>(x);
        if (holder[e] == 0xffff) {
            holder[e] = static_cast<unsigned short>(slot);
            raw[e] = bits;
            out[e] = element_value(kind.element, bits);
        } else if (raw[e] != bits) {
            const unsigned first = holder[e];
            record_error(&lanes[lane], "mma_sync at %s:%d: element (%u, %u) of the %s fragment is x[%u] of lane %u "
                         "and x[%u] of lane %u, which differ; which lane holds which element is unspecified, so x[] "
                         "may only be changed the same way in every lane", lanes[0].file, lanes[0].line, e / cols,
                         e % cols, use_name(kind.use), first % kind.per_lane, first / kind.per_lane, i, lane);
            return false;
        }
    }
    return true;
}

GPUCONV_EMU_RUNTIME inline bool matrix_mma(Thread* lanes) {
    static double a[kMaxMatrixElements], b[kMaxMatrixElements], c[kMaxMatrixElements];
    if (!gather_operand(lanes, 1, a) || !gather_operand(lanes, 2, b) || !gather_operand(lanes, 3, c)) return false;
    const int d_map = lanes[0].matrix.kinds[0];
    const FragmentKind& kind = g_fragment_maps[lanes[0].matrix.kinds[1]].kind;
    const int m = kind.m, n = kind.n, k = kind.k;
    float d[kMaxMatrixElements];
    for (int r = 0; r < m; ++r)
        for (int col = 0; col < n; ++col) {
            double sum = c[r * n + col];
            for (int i = 0; i < k; ++i) sum += a[r * k + i] * b[i * n + col];
            d[r * n + col] = static_cast<float>(sum);
        }
    const int per_lane = g_fragment_maps[d_map].kind.per_lane;
    for (unsigned slot = 0; slot < 32u * per_lane; ++slot) {
        unsigned char* x = static_cast<unsigned char*>(lanes[slot / per_lane].matrix.storage[0]);
        *reinterpret_cast<Bits32*>(x + (slot % per_lane) * 4) = from_bits<unsigned>(to_bits(d[slot_element(d_map, slot)]));
    }
    return true;
}

}  // namespace gpuconv_emu
