// Image sources of the engine: decoded files, an in-memory array, and the wrapper that lets an
// append re-encode the last partial chunk row (old images read back, new ones after them).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "formats/format.hpp"
#include "i2z/reader.hpp"
#include "pipeline/engine.hpp"

namespace i2z {

// What the probe pass learned about one file: only what planning and decoding need, since it
// is kept for every input until the run ends — so it is compact (64 bytes + the FITS extension
// text, which fits the string's inline buffer): the header shape is stored as which of (H, W),
// (H, W, C), (C, H, W) it is, and what few files have (an error, another shape) lives in `rare`.
struct Probed {
  const Format* format = nullptr;
  std::uint64_t height = 0, width = 0, file_size = 0;
  // The file's mtime at probe time (set by probe_files, not by probes read back from JSON):
  // the decode pass checks it (with file_size) instead of probing the file a second time.
  std::int64_t mtime_ns = 0;
  std::uint32_t channels = 0;
  DType dtype = DType::u8;
  PixelLayout layout = PixelLayout::HWC;
  bool ok = false;
  bool stamped = false;  // mtime_ns, layout, shape and fits_extension are set

 private:
  enum class Shape : std::uint8_t { None, HW, HWC, CHW, Rare };
  Shape shape_ = Shape::None;

 public:
  std::string fits_extension;  // side-car field only the header holds (a few bytes)

  Probed() = default;
  Probed(const Probed& o);
  Probed& operator=(const Probed& o);
  Probed(Probed&&) noexcept = default;
  Probed& operator=(Probed&&) noexcept = default;
  ~Probed() = default;

  std::vector<std::uint64_t> shape() const;
  void set_shape(std::vector<std::uint64_t> shape);
  const std::string& error() const;  // why the probe failed (empty when ok)
  void set_error(std::string error);

 private:
  struct Rare {
    std::string error;
    std::vector<std::uint64_t> shape;
  };
  std::unique_ptr<Rare> rare_;  // null for almost every file
  Rare& rare();
};

// Reads every header in parallel into probed[i].
void probe_files(const std::vector<std::string>& files, const FormatOptions& fo, unsigned workers,
                 std::vector<Probed>& probed);

// Image i of the source is files[i] (an append or a resume passes the files still to write).
// The spans must outlive the source.
std::unique_ptr<ImageSource> make_file_source(std::span<const std::string> files, std::span<const Probed> probed,
                                              const FormatOptions& fo,
                                              std::uint32_t C, std::uint64_t H, std::uint64_t W, DType dtype,
                                              const ConvertOptions& options);
std::unique_ptr<ImageSource> make_array_source(const ArrayInput& input, DType dtype);

// Image i of the array: i >= offset -> image i - offset of `inner`; i < offset -> read back
// from `old` (an append's partial chunk row; `old` may be null when no row is partial).
std::unique_ptr<ImageSource> make_append_source(std::uint64_t offset, std::unique_ptr<ImageSource> inner,
                                                std::shared_ptr<const ArrayReader> old, std::uint64_t image_bytes);

}  // namespace i2z
