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
// is kept for every input until the run ends. The side-car fields come at decode time.
struct Probed {
  const Format* format = nullptr;
  std::uint64_t height = 0, width = 0, file_size = 0;
  std::uint32_t channels = 0;
  DType dtype = DType::u8;
  bool ok = false;
  std::string error;  // why the probe failed (empty when ok: no allocation)
  // Set by probe_files (not by probes read back from JSON): what decode needs besides the fields
  // above, and the file's mtime at probe time, which the decode pass checks (with file_size)
  // instead of probing the file a second time. shape/fits_extension are side-car fields that
  // only the header holds (a few dozen bytes per file).
  bool stamped = false;
  PixelLayout layout = PixelLayout::HWC;
  std::vector<std::uint64_t> shape;
  std::string fits_extension;
  std::int64_t mtime_ns = 0;
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
