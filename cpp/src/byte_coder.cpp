#include "nnsqueeze/byte_coder.hpp"

#include <stdexcept>
#include <string>

#include "nnsqueeze/arith.hpp"

namespace nnsqueeze {
namespace {

// Byte planes of real tensors are close to stationary.
const Adaptation kByteRate(5, 10);

void check_itemsize(int itemsize) {
    if (itemsize != 1 && itemsize != 2 && itemsize != 4 && itemsize != 8) {
        throw std::invalid_argument("itemsize must be 1, 2, 4 or 8, got " + std::to_string(itemsize));
    }
}

}  // namespace

void encode_bytes(const uint8_t* data, std::size_t count, int itemsize, std::vector<uint8_t>& out) {
    check_itemsize(itemsize);
    std::vector<ContextModel> tree(static_cast<std::size_t>(itemsize) * 256);
    ArithEncoder enc(out, kByteRate);
    for (std::size_t i = 0; i < count; ++i) {
        const uint8_t* element = data + i * static_cast<std::size_t>(itemsize);
        for (int plane = 0; plane < itemsize; ++plane) {
            const unsigned byte = element[itemsize - 1 - plane];
            ContextModel* node = tree.data() + plane * 256;
            unsigned index = 1;
            for (int bit = 7; bit >= 0; --bit) {
                const unsigned b = (byte >> bit) & 1u;
                enc.encode(b, node[index]);
                index = 2 * index + b;
            }
        }
    }
    enc.finish();
}

void decode_bytes(const uint8_t* payload, std::size_t size, std::size_t count, int itemsize, uint8_t* data) {
    check_itemsize(itemsize);
    std::vector<ContextModel> tree(static_cast<std::size_t>(itemsize) * 256);
    ArithDecoder dec(payload, size, kByteRate);
    for (std::size_t i = 0; i < count; ++i) {
        if ((i & 0xFFFF) == 0 && dec.overrun()) throw BitstreamError("payload ends early (truncated byte stream)");
        uint8_t* element = data + i * static_cast<std::size_t>(itemsize);
        for (int plane = 0; plane < itemsize; ++plane) {
            ContextModel* node = tree.data() + plane * 256;
            unsigned index = 1;
            for (int bit = 0; bit < 8; ++bit) index = 2 * index + dec.decode(node[index]);
            element[itemsize - 1 - plane] = static_cast<uint8_t>(index - 256);
        }
    }
    if (dec.overrun()) throw BitstreamError("payload ends early (truncated byte stream)");
    if (dec.consumed() != size) {
        throw BitstreamError("byte stream has " + std::to_string(size - dec.consumed()) +
                             " trailing bytes (corrupt or wrong shape)");
    }
}

}  // namespace nnsqueeze
