// Small helpers shared by the format files: whole-file reads, errno errors, the pixel bound.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace i2z {

// Throws FileNotFound (ENOENT) or IO naming `path` and the errno text.
[[noreturn]] void fail_errno(const std::string& what, const std::string& path);

// The whole file in one read (a file shrinking meanwhile yields the shorter content).
std::vector<unsigned char> read_whole_file(const std::string& path);

// Throws Value when height x width x channels exceeds max_pixels (checked without overflow).
void check_pixel_limit(std::uint64_t height, std::uint64_t width, std::uint64_t channels, std::uint64_t max_pixels);

struct FileCloser {
  std::FILE* fp;
  ~FileCloser() {
    if (fp != nullptr) std::fclose(fp);
  }
};

}  // namespace i2z
