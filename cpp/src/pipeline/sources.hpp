// Image sources of the engine: decoded files, an in-memory array, and the wrapper that lets an
// append re-encode the last partial chunk row (old images read back, new ones after them).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "formats/format.hpp"
#include "i2z/reader.hpp"
#include "pipeline/engine.hpp"

namespace i2z {

// What the probe pass learned about one file.
struct Probed {
  const Format* format = nullptr;
  std::uint64_t height = 0, width = 0;
  std::uint32_t channels = 0;
  DType dtype = DType::u8;
  bool ok = false;
  // Set by probe_files (not by probes read back from JSON): what decode needs besides the fields
  // above, and the file's size and mtime at probe time, which the decode pass checks instead of
  // probing the file a second time.
  bool stamped = false;
  PixelLayout layout = PixelLayout::HWC;
  std::vector<std::uint64_t> shape;
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
};

// Reads every header in parallel; fills probed[i] and the probe-time fields of records[i]
// (source path, size, format, dtype, shape, or the error).
void probe_files(const std::vector<std::string>& files, const FormatOptions& fo, unsigned workers,
                 std::vector<Probed>& probed, std::vector<ImageRecord>& records);

// Images [0, N) of the source are files[first_file + i] (an append passes the new files only).
std::unique_ptr<ImageSource> make_file_source(const std::vector<std::string>& files,
                                              const std::vector<Probed>& probed, const FormatOptions& fo,
                                              std::uint32_t C, std::uint64_t H, std::uint64_t W, DType dtype,
                                              const ConvertOptions& options);
std::unique_ptr<ImageSource> make_array_source(const ArrayInput& input, DType dtype);

// Image i of the array: i >= offset -> image i - offset of `inner`; i < offset -> read back
// from `old` (an append's partial chunk row; `old` may be null when no row is partial).
std::unique_ptr<ImageSource> make_append_source(std::uint64_t offset, std::unique_ptr<ImageSource> inner,
                                                std::shared_ptr<const ArrayReader> old, std::uint64_t image_bytes);

}  // namespace i2z
