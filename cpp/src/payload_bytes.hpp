// Internal to the payload coders (level tokens, byte planes): the unsigned LEB128 varints that
// frame their sections, and a bounds-checked reader of a payload whose errors name the payload.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "nnsqueeze/arith.hpp"

namespace nnsqueeze::detail {

inline void put_uvarint(std::vector<uint8_t>& out, uint64_t v) {
    while (v >= 0x80) {
        out.push_back(static_cast<uint8_t>(v | 0x80));
        v >>= 7;
    }
    out.push_back(static_cast<uint8_t>(v));
}

class PayloadReader {
public:
    // `payload` names the payload in error messages ("token payload").
    PayloadReader(const uint8_t* data, std::size_t size, const char* payload)
        : p_(data), end_(data + size), payload_(payload) {}

    std::size_t left() const { return static_cast<std::size_t>(end_ - p_); }
    const uint8_t* take(std::size_t n, const char* what) {
        if (n > left()) throw BitstreamError(std::string(payload_) + " ends early (" + what + ")");
        const uint8_t* at = p_;
        p_ += n;
        return at;
    }
    uint8_t byte(const char* what) { return *take(1, what); }
    uint64_t uvarint(const char* what) {
        uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            const uint8_t b = byte(what);
            v |= static_cast<uint64_t>(b & 0x7F) << shift;
            if (!(b & 0x80)) return v;
        }
        throw BitstreamError(std::string(payload_) + ": varint longer than 64 bits (" + what + ")");
    }

private:
    const uint8_t* p_;
    const uint8_t* end_;
    const char* payload_;
};

}  // namespace nnsqueeze::detail
