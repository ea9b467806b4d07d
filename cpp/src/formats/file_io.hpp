// Small helpers shared by the format files: opening inputs safely, bounded whole-file reads,
// errno errors, the pixel bound.
#pragma once
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "pipeline/geometry.hpp"  // check_pixel_limit

namespace i2z {

// Throws FileNotFound (ENOENT) or IO naming `path` and the errno text.
[[noreturn]] void fail_errno(const std::string& what, const std::string& path);

// A read-only descriptor of a regular file. Opened non-blocking and checked with fstat before
// any read, so a FIFO, socket or device put in a file's place fails at once instead of
// blocking the worker (and the run) forever.
int open_input(const std::string& path);
// The same as a FILE* ("rb").
std::FILE* fopen_input(const std::string& path);

// How many leading bytes of a file of `size` bytes the decoder needs (default: all of them).
using Extent = std::function<std::uint64_t(int fd, std::uint64_t size)>;

// The bytes the decoder needs in one read (a file shrinking meanwhile yields the shorter
// content). More than `budget` bytes is a per-image error, not an allocation.
std::vector<unsigned char> read_whole_file(const std::string& path, std::uint64_t budget = ~std::uint64_t{0},
                                           const Extent& extent = {});

// PNG: through the IEND chunk, so data appended after a valid image (or a sparse hole) is not
// read. Files no larger than a decoder could use for `raw_bytes` of pixels are read whole
// without walking their chunks.
Extent png_extent(std::uint64_t raw_bytes);

struct FileCloser {
  std::FILE* fp;
  ~FileCloser() {
    if (fp != nullptr) std::fclose(fp);
  }
};

}  // namespace i2z
