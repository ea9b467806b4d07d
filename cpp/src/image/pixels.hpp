// Pixel kernels of the pipeline: normalise a decoded image into its CHW slot of the store
// (layout change, channel rules, cast with rounding and clipping, top-left placement), and
// the per-image statistics of the stored values. One pass, no allocation.
#pragma once
#include <cstdint>

#include "i2z/dtype.hpp"

namespace i2z {

struct SrcImage {
  const void* data = nullptr;
  DType dtype = DType::u8;
  std::uint32_t channels = 1;
  std::uint64_t height = 0, width = 0;
  bool chw = false;  // planar (C,H,W) when true, interleaved (H,W,C) otherwise
};

// Writes the image into dst (C x H x W of dst_dtype, C order), placed top-left; pixels
// outside the image are 0. Channel rule (design §3): a 1-channel image into 3 or 4 channels
// is replicated into channels 0..2 with channel 3 (alpha) = dst dtype max; otherwise extra
// channels are 0 and surplus source channels are dropped. Floats cast to integers round half
// to even and clip; NaN becomes 0.
void normalise_into(const SrcImage& src, void* dst, DType dst_dtype, std::uint32_t C, std::uint64_t H,
                    std::uint64_t W);

// Casts n contiguous values.
void cast_values(const void* src, DType src_dtype, void* dst, DType dst_dtype, std::uint64_t n);

struct Stats {
  double min = 0, max = 0, mean = 0;
};
// NaN-ignoring min/max/mean (all NaN or n == 0 -> NaN).
Stats compute_stats(const void* data, DType dtype, std::uint64_t n);

}  // namespace i2z
