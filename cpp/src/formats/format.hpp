// Image formats: sniff -> probe (header only) -> decode into a caller-provided buffer.
// Each format is one file exposing one `const Format&`; registry.cpp lists them.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "i2z/convert.hpp"
#include "i2z/dtype.hpp"

namespace i2z {

enum class PixelLayout { HWC, CHW };  // interleaved (PNG/JPEG/TIFF) or planar (FITS, planar TIFF)

struct ImageInfo {
  std::uint64_t height = 0, width = 0;
  std::uint32_t channels = 1;
  DType dtype = DType::u8;
  PixelLayout layout = PixelLayout::HWC;
  std::vector<std::uint64_t> shape;  // as the reference library reports it (side-car "shape")
  std::string fits_extension;        // FITS: the selector(s) used, as text
  std::string fits_header_json;      // FITS: JSON object of header cards
  std::uint64_t pixel_count() const { return height * width * channels; }
  std::uint64_t byte_size() const { return pixel_count() * dtype_size(dtype); }
};

struct FormatOptions {
  std::vector<FitsSelector> fits_extension;
  std::uint64_t max_pixels = std::uint64_t{1} << 31;
  // Bytes a decoder may read or allocate for one image (the worker's share of max_memory less
  // its row buffers); past it the image is a per-image error.
  std::uint64_t memory_budget = ~std::uint64_t{0};
};

class Format {
 public:
  virtual ~Format() = default;
  virtual std::string_view name() const = 0;                    // "png", "jpeg", "tiff", "fits"
  virtual const std::vector<std::string>& extensions() const = 0;  // lower case, with dot
  // Header only. Throws i2z::Error with a one-line reason on unreadable/corrupt/too-large input.
  virtual ImageInfo probe(const std::string& path, const FormatOptions& options) const = 0;
  // Decodes into `out`, which holds info.byte_size() bytes, in info.layout and info.dtype
  // (native byte order). `info` is what probe() returned for this file. Throws i2z::Error.
  virtual void decode(const std::string& path, const FormatOptions& options, const ImageInfo& info,
                      void* out) const = 0;
  // decode() that also sets what only a full header read gives, i.e. probe()'s fits_header_json
  // (FITS; empty for the others), so that a conversion needs no second probe per file.
  virtual void decode_with_header(const std::string& path, const FormatOptions& options, const ImageInfo& info,
                                  void* out, std::string& fits_header_json) const {
    fits_header_json.clear();
    decode(path, options, info, out);
  }
};

const Format& png_format();
const Format& jpeg_format();
const Format& tiff_format();
const Format& fits_format();

// All formats, and the one handling a path by its (case-insensitive) extension, or nullptr.
const std::vector<const Format*>& all_formats();
const Format* format_for_path(std::string_view path);

}  // namespace i2z
