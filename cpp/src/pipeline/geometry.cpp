#include "pipeline/geometry.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "i2z/error.hpp"

namespace i2z {

std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, const char* what) {
  std::uint64_t r;
  if (__builtin_mul_overflow(a, b, &r))
    fail(ErrorKind::Value, std::string(what) + " is too large: " + std::to_string(a) + " x " + std::to_string(b) +
                               " overflows 64 bits");
  return r;
}

std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t c, std::uint64_t d, const char* what) {
  return checked_mul(checked_mul(checked_mul(a, b, what), c, what), d, what);
}

void check_pixel_limit(std::uint64_t height, std::uint64_t width, std::uint64_t channels, std::uint64_t max_pixels) {
  std::uint64_t hw = 0, all = 0;
  const bool over = __builtin_mul_overflow(height, width, &hw) || __builtin_mul_overflow(hw, channels, &all) ||
                    all > max_pixels;
  if (over)
    fail(ErrorKind::Value, "image of " + std::to_string(height) + "x" + std::to_string(width) + "x" +
                               std::to_string(channels) + " pixels exceeds the limit of " + std::to_string(max_pixels) +
                               " (max_pixels)");
}

ArrayGeometry::ArrayGeometry(const ArrayMeta& m) {
  if (m.shape.size() != 4 || m.inner_chunk.size() != 4 || m.chunk_grid.size() != 4)
    fail(ErrorKind::Value, "internal: the image array must be 4-D and sharded");
  N = m.shape[0];
  C = m.shape[1];
  H = m.shape[2];
  W = m.shape[3];
  n = m.inner_chunk[0];
  h = m.inner_chunk[2];
  w = m.inner_chunk[3];
  item = dtype_size(m.dtype);
  if (C == 0 || H == 0 || W == 0 || n == 0 || h == 0 || w == 0 || m.chunk_grid[0] == 0 || m.chunk_grid[0] % n != 0)
    fail(ErrorKind::Value, "internal: invalid array geometry");
  ty = H / h + (H % h != 0);
  tx = W / w + (W % w != 0);
  rows = N / n + (N % n != 0);
  rows_per_shard = m.chunk_grid[0] / n;
  image_bytes_ = checked_mul(C, H, W, item, "image size (C x H x W x item size)");
  tile_bytes_ = checked_mul(n, C, h, w * item, "chunk size");
  row_bytes_ = checked_mul(n, image_bytes_, "chunk row size");
  checked_mul(ty, tx, rows_per_shard, 16, "shard index size");
}

std::uint64_t worker_memory_budget(std::uint64_t total, unsigned workers) {
  if (total == 0) {
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
    std::uint64_t ram = pages > 0 && page > 0 ? static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page)
                                              : std::uint64_t{8} << 30;
    // A container's limit (cgroup v2) is what the kernel enforces, not the machine's RAM.
    std::ifstream cg("/sys/fs/cgroup/memory.max");
    std::uint64_t limit = 0;
    if (cg >> limit && limit > 0) ram = std::min(ram, limit);
    total = ram / 2;
  }
  return std::max<std::uint64_t>(1, total / std::max(1u, workers));
}

std::string mib_text(std::uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

}  // namespace i2z
