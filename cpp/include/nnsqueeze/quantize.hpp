// Uniform scalar quantization: level = round(w / step), reconstruction = level * step.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nnsqueeze {

// Writes round-half-away-from-zero levels of w / step.  Returns the index of the first
// element that is NaN/Inf or whose level exceeds +-max_abs_level (nothing is written
// from there on), or -1 if all elements were quantized.
int64_t quantize_uniform(const float* w, std::size_t count, double step, int64_t max_abs_level, int32_t* levels);

void dequantize_uniform(const int32_t* levels, std::size_t count, double step, float* w);

}  // namespace nnsqueeze
