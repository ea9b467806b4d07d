// Per-channel resize matching skimage.transform.resize(order=k, preserve_range=True,
// anti_aliasing=None, mode='reflect') — see resize-semantics.md.
#pragma once
#include <cstdint>
#include <vector>

#include "image/pixels.hpp"

namespace i2z {

// Resizes every channel of `src` to (H, W). The result is float64 for every input dtype
// except float32 (float32 result) and order 0 on integers (input dtype kept), in CHW layout;
// `out_dtype` tells which. `out` is resized as needed and reused between calls.
void resize_image(const SrcImage& src, std::uint64_t H, std::uint64_t W, int order, std::vector<std::uint8_t>& out,
                  DType& out_dtype);

}  // namespace i2z
