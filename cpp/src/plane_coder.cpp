#include "nnsqueeze/plane_coder.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "nnsqueeze/arith.hpp"
#include "nnsqueeze/parallel.hpp"
#include "payload_bytes.hpp"
#include "rans.hpp"

namespace nnsqueeze {
namespace {

enum PlaneMode : uint8_t { kRaw = 0, kConstant = 1, kRans = 2 };

// rANS as the token coder speaks it (rans.hpp): four interleaved 32-bit states, 12-bit frequencies.
static_assert(kPlaneProbBits == detail::kRansProbBits);
constexpr int kLanes = detail::kRansLanes;
constexpr uint32_t kSlotMask = detail::kRansSlotMask;
constexpr std::size_t kBitmapBytes = 32;
constexpr double kMinSaving = 0.98;  // rANS only where it saves 2 %: below that, decode speed is worth more

using Frequencies = std::array<uint32_t, 256>;
using Counts = std::array<uint64_t, 256>;

template <int Size>
struct UintOf;
template <>
struct UintOf<1> {
    using type = uint8_t;
};
template <>
struct UintOf<2> {
    using type = uint16_t;
};
template <>
struct UintOf<4> {
    using type = uint32_t;
};
template <>
struct UintOf<8> {
    using type = uint64_t;
};

// ---------------------------------------------------------------------------------------------
// Byte planes

// planes[p][i] = byte p (most significant first) of element i, after the optional rotation.
template <int Size, bool Rotate>
void split(const uint8_t* data, std::size_t n, uint8_t* planes) {
    using U = typename UintOf<Size>::type;
    constexpr int kBits = 8 * Size;
    for (std::size_t i = 0; i < n; ++i) {
        U v;
        std::memcpy(&v, data + i * Size, Size);
        if constexpr (Rotate && Size > 1) v = static_cast<U>((v << 1) | (v >> (kBits - 1)));
        for (int p = 0; p < Size; ++p) planes[p * n + i] = static_cast<uint8_t>(v >> (8 * (Size - 1 - p)));
    }
}

template <int Size, bool Rotate>
void merge(const uint8_t* const* planes, std::size_t n, uint8_t* data) {
    using U = typename UintOf<Size>::type;
    constexpr int kBits = 8 * Size;
    for (std::size_t i = 0; i < n; ++i) {
        U v = 0;
        for (int p = 0; p < Size; ++p) v = static_cast<U>(v | (static_cast<U>(planes[p][i]) << (8 * (Size - 1 - p))));
        if constexpr (Rotate && Size > 1) v = static_cast<U>((v >> 1) | (v << (kBits - 1)));
        std::memcpy(data + i * Size, &v, Size);
    }
}

template <int Size>
void split_as(const PlaneLayout& layout, const uint8_t* data, std::size_t n, uint8_t* planes) {
    if (layout.rotate_sign)
        split<Size, true>(data, n, planes);
    else
        split<Size, false>(data, n, planes);
}

void split_any(const PlaneLayout& layout, const uint8_t* data, std::size_t n, uint8_t* planes) {
    switch (layout.itemsize) {
        case 1: return split_as<1>(layout, data, n, planes);
        case 2: return split_as<2>(layout, data, n, planes);
        case 4: return split_as<4>(layout, data, n, planes);
        default: return split_as<8>(layout, data, n, planes);
    }
}

template <int Size>
void merge_as(const PlaneLayout& layout, const uint8_t* const* planes, std::size_t n, uint8_t* data) {
    if (layout.rotate_sign)
        merge<Size, true>(planes, n, data);
    else
        merge<Size, false>(planes, n, data);
}

void merge_any(const PlaneLayout& layout, const uint8_t* const* planes, std::size_t n, uint8_t* data) {
    switch (layout.itemsize) {
        case 1: return merge_as<1>(layout, planes, n, data);
        case 2: return merge_as<2>(layout, planes, n, data);
        case 4: return merge_as<4>(layout, planes, n, data);
        default: return merge_as<8>(layout, planes, n, data);
    }
}

// ---------------------------------------------------------------------------------------------
// Frequencies

// Order-0 frequencies summing to 2^12, every present symbol at least 1; needs >= 2 symbols.
Frequencies normalize(const Counts& counts, std::size_t n) {
    Frequencies f{};
    uint32_t sum = 0;
    for (int s = 0; s < 256; ++s) {
        if (counts[s] == 0) continue;
        const uint64_t scaled = (counts[s] * kPlaneProbOne + n / 2) / n;
        f[s] = static_cast<uint32_t>(std::max<uint64_t>(scaled, 1));
        sum += f[s];
    }
    // Rounding leaves the sum off by a little: settle the difference on the most frequent symbols,
    // where it costs the least.  The largest frequency is >= sum / 256 > 16 while sum > 2^12.
    while (sum != kPlaneProbOne) {
        const auto largest = static_cast<std::size_t>(std::max_element(f.begin(), f.end()) - f.begin());
        if (sum < kPlaneProbOne) {
            f[largest] += kPlaneProbOne - sum;
            sum = kPlaneProbOne;
        } else {
            const uint32_t cut = std::min(sum - kPlaneProbOne, f[largest] - 1);
            f[largest] -= cut;
            sum -= cut;
        }
    }
    return f;
}

// Four partial histograms: consecutive equal bytes would otherwise wait on each other's increment.
Counts histogram(const uint8_t* plane, std::size_t n) {
    std::array<std::array<uint32_t, 256>, 4> part{};
    std::size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        ++part[0][plane[i]];
        ++part[1][plane[i + 1]];
        ++part[2][plane[i + 2]];
        ++part[3][plane[i + 3]];
    }
    for (; i < n; ++i) ++part[0][plane[i]];
    Counts counts{};
    for (const auto& h : part)
        for (int s = 0; s < 256; ++s) counts[s] += h[s];
    return counts;
}

double coded_bits(const Counts& counts, const Frequencies& f) {
    double bits = 0;
    for (int s = 0; s < 256; ++s)
        if (counts[s]) bits += static_cast<double>(counts[s]) * (kPlaneProbBits - std::log2(static_cast<double>(f[s])));
    return bits;
}

void put_table(std::vector<uint8_t>& out, const Frequencies& f) {
    std::array<uint8_t, kBitmapBytes> bitmap{};
    for (int s = 0; s < 256; ++s)
        if (f[s]) bitmap[s >> 3] = static_cast<uint8_t>(bitmap[s >> 3] | (1u << (s & 7)));
    out.insert(out.end(), bitmap.begin(), bitmap.end());
    for (int s = 0; s < 256; ++s)
        if (f[s]) detail::put_uvarint(out, f[s] - 1);
}

std::size_t table_bytes(const Frequencies& f) {
    std::size_t bytes = kBitmapBytes;
    for (uint32_t v : f)
        if (v) bytes += v - 1 < 0x80 ? 1 : 2;
    return bytes;
}

// ---------------------------------------------------------------------------------------------
// rANS encoder

void encode_rans(const uint8_t* symbols, std::size_t n, const Frequencies& f, std::vector<uint8_t>& stream) {
    std::array<detail::RansEncSymbol, 256> table{};
    uint32_t cum = 0;
    for (int s = 0; s < 256; ++s) {
        if (!f[s]) continue;
        table[s] = detail::rans_enc_symbol(cum, f[s]);
        cum += f[s];
    }
    detail::RansWordSink sink(n);
    sink.put_run(n, [&](std::size_t i) -> const detail::RansEncSymbol& { return table[symbols[i]]; });
    sink.finish(stream);
}

// Whether a sample of every 8th byte already shows a plane too dense to code: its order-0 entropy
// is above kMinSaving * 8 bits with a margin far wider than the estimate's bias (< 0.01 bits for
// 2^15 samples).  Mantissa planes are this way; they skip the full histogram.
constexpr std::size_t kSampleStride = 8;
constexpr std::size_t kMinSampled = 1u << 15;
bool sample_says_raw(const uint8_t* plane, std::size_t n) {
    if (n < kMinSampled * kSampleStride) return false;
    std::array<uint32_t, 256> counts{};
    std::size_t taken = 0;
    for (std::size_t i = 0; i < n; i += kSampleStride, ++taken) ++counts[plane[i]];
    double bits = 0;
    const double total = static_cast<double>(taken);
    for (uint32_t c : counts)
        if (c) bits += static_cast<double>(c) * std::log2(total / static_cast<double>(c));
    return bits / total > 8 * kMinSaving + 0.05;
}

// Codes one plane of a chunk, choosing the cheapest mode.
void encode_plane(const uint8_t* plane, std::size_t n, std::vector<uint8_t>& out) {
    if (sample_says_raw(plane, n)) {
        out.push_back(kRaw);
        out.insert(out.end(), plane, plane + n);
        return;
    }
    Counts counts = histogram(plane, n);
    const auto distinct = std::count_if(counts.begin(), counts.end(), [](uint64_t c) { return c != 0; });
    if (distinct == 1) {
        out.push_back(kConstant);
        out.push_back(plane[0]);
        return;
    }
    if (distinct > 1) {
        const Frequencies f = normalize(counts, n);
        const double estimate = coded_bits(counts, f) / 8 + static_cast<double>(table_bytes(f) + 4 * kLanes + 4);
        if (estimate < kMinSaving * static_cast<double>(n)) {
            const std::size_t mark = out.size();
            out.push_back(kRans);
            put_table(out, f);
            std::vector<uint8_t> stream;
            encode_rans(plane, n, f, stream);
            if (stream.size() + (out.size() - mark) + 4 < n) {
                detail::put_uvarint(out, stream.size());
                out.insert(out.end(), stream.begin(), stream.end());
                return;
            }
            out.resize(mark);  // the estimate was too hopeful: store the plane raw
        }
    }
    out.push_back(kRaw);
    out.insert(out.end(), plane, plane + n);
}

// ---------------------------------------------------------------------------------------------
// Decoder

// Per slot of [0, 2^12): its symbol's frequency and the slot's offset in the symbol's range, and,
// apart, the symbol itself (two independent loads beat unpacking one word on the state's chain).
struct SlotStep {
    uint16_t freq;
    uint16_t offset;
};
struct SlotTable {
    std::array<SlotStep, kPlaneProbOne> step;
    std::array<uint8_t, kPlaneProbOne> symbol;
};

void read_table(detail::PayloadReader& in, SlotTable& slots) {
    const uint8_t* bitmap = in.take(kBitmapBytes, "frequency table");
    uint32_t cum = 0;
    for (uint32_t s = 0; s < 256; ++s) {
        if (!(bitmap[s >> 3] >> (s & 7) & 1u)) continue;
        const uint64_t f = in.uvarint("frequency table") + 1;
        if (f >= kPlaneProbOne || cum + f > kPlaneProbOne)
            throw BitstreamError("plane payload: frequencies do not sum to 4096");
        for (uint32_t k = 0; k < f; ++k) {
            slots.step[cum + k] = {static_cast<uint16_t>(f), static_cast<uint16_t>(k)};
            slots.symbol[cum + k] = static_cast<uint8_t>(s);
        }
        cum += static_cast<uint32_t>(f);
    }
    if (cum != kPlaneProbOne) throw BitstreamError("plane payload: frequencies do not sum to 4096");
}

void decode_rans(const uint8_t* stream, std::size_t size, const SlotTable& slots, std::size_t n, uint8_t* out) {
    detail::RansSource rans(stream, size, "plane payload");
    // Local copies: the byte stores to `out` could alias the source's members.
    std::array<uint32_t, kLanes> state = rans.state;
    const uint8_t* p = rans.p;
    std::size_t i = 0;
    // Fast path: four symbols read at most four words, so the input is checked once per group.  The
    // refill branch beats a branch-free select even on dense planes (it keeps the state chain short).
    for (; i + kLanes <= n && rans.end - p >= 2 * kLanes; i += kLanes) {
        for (int lane = 0; lane < kLanes; ++lane) {
            uint32_t& x = state[static_cast<std::size_t>(lane)];
            const SlotStep e = slots.step[x & kSlotMask];
            out[i + lane] = slots.symbol[x & kSlotMask];
            x = detail::RansSource::advance(x, e.freq, e.offset, p);
        }
    }
    for (; i < n; ++i) {
        uint32_t& x = state[i & (kLanes - 1)];
        const SlotStep e = slots.step[x & kSlotMask];
        out[i] = slots.symbol[x & kSlotMask];
        if (e.freq * (x >> kPlaneProbBits) + e.offset < detail::kRansStateLow && rans.end - p < 2)
            rans.fail("rANS stream ends early");
        x = detail::RansSource::advance(x, e.freq, e.offset, p);
    }
    rans.state = state;
    rans.p = p;
    rans.check_finished();
}

struct ChunkBuffers {
    std::vector<uint8_t> planes;
    std::unique_ptr<SlotTable> slots = std::make_unique<SlotTable>();
};

void decode_chunk(const uint8_t* payload, std::size_t size, const PlaneLayout& layout, std::size_t n,
                  ChunkBuffers& buf, uint8_t* out) {
    const auto itemsize = static_cast<std::size_t>(layout.itemsize);
    buf.planes.resize(itemsize * n);
    std::array<const uint8_t*, 8> planes{};
    detail::PayloadReader in(payload, size, "plane payload");
    for (std::size_t p = 0; p < itemsize; ++p) {
        uint8_t* plane = buf.planes.data() + p * n;
        switch (in.byte("plane mode")) {
            case kRaw: planes[p] = in.take(n, "raw plane"); break;
            case kConstant:
                std::memset(plane, in.byte("constant plane"), n);
                planes[p] = plane;
                break;
            case kRans: {
                read_table(in, *buf.slots);
                const uint64_t length = in.uvarint("rANS stream length");
                if (length > in.left()) throw BitstreamError("plane payload ends early (rANS stream)");
                decode_rans(in.take(length, "rANS stream"), length, *buf.slots, n, plane);
                planes[p] = plane;
                break;
            }
            default: throw BitstreamError("plane payload: unknown plane mode");
        }
    }
    if (in.left() != 0) throw BitstreamError("plane payload: chunk has trailing bytes");
    merge_any(layout, planes.data(), n, out);
}

std::size_t chunk_size(const PlaneLayout& layout, std::size_t chunk) {
    return std::min(layout.chunk_elements, layout.count - chunk * layout.chunk_elements);
}

}  // namespace

void check_plane_layout(const PlaneLayout& layout) {
    const int s = layout.itemsize;
    if (s != 1 && s != 2 && s != 4 && s != 8)
        throw std::invalid_argument("itemsize must be 1, 2, 4 or 8, got " + std::to_string(s));
    if (layout.chunk_elements == 0 || layout.chunk_elements > kMaxPlaneChunkElements)
        throw std::invalid_argument("chunk_elements must be in 1.." + std::to_string(kMaxPlaneChunkElements) +
                                    ", got " + std::to_string(layout.chunk_elements));
}

std::vector<std::vector<uint8_t>> encode_planes(const uint8_t* data, const PlaneLayout& layout, int threads) {
    check_plane_layout(layout);
    const std::size_t chunks = layout.chunk_count();
    const auto itemsize = static_cast<std::size_t>(layout.itemsize);
    std::vector<std::vector<uint8_t>> out(chunks);
    parallel_ranges(chunks, threads, layout.chunk_elements * itemsize, [&](std::size_t b, std::size_t e) {
        std::vector<uint8_t> planes;
        for (std::size_t c = b; c < e; ++c) {
            const std::size_t n = chunk_size(layout, c);
            planes.resize(itemsize * n);
            split_any(layout, data + c * layout.chunk_elements * itemsize, n, planes.data());
            out[c].reserve(itemsize * n / 2 + 64);
            for (std::size_t p = 0; p < itemsize; ++p) encode_plane(planes.data() + p * n, n, out[c]);
        }
    });
    return out;
}

void decode_planes(const uint8_t* payload, std::size_t size, const uint64_t* chunk_lengths, std::size_t num_chunks,
                   const PlaneLayout& layout, int threads, uint8_t* out) {
    check_plane_layout(layout);
    if (num_chunks != layout.chunk_count())
        throw BitstreamError("plane payload: " + std::to_string(num_chunks) + " entry points for " +
                             std::to_string(layout.chunk_count()) + " chunks");
    std::vector<std::size_t> offsets(num_chunks + 1, 0);
    for (std::size_t c = 0; c < num_chunks; ++c) {
        if (chunk_lengths[c] > size - offsets[c]) throw BitstreamError("plane payload: entry points run past the payload");
        offsets[c + 1] = offsets[c] + static_cast<std::size_t>(chunk_lengths[c]);
    }
    if (offsets[num_chunks] != size) throw BitstreamError("plane payload: entry points do not cover the payload");
    const auto itemsize = static_cast<std::size_t>(layout.itemsize);
    parallel_ranges(num_chunks, threads, layout.chunk_elements * itemsize, [&](std::size_t b, std::size_t e) {
        ChunkBuffers buf;
        for (std::size_t c = b; c < e; ++c) {
            decode_chunk(payload + offsets[c], offsets[c + 1] - offsets[c], layout, chunk_size(layout, c), buf,
                         out + c * layout.chunk_elements * itemsize);
        }
    });
}

}  // namespace nnsqueeze
