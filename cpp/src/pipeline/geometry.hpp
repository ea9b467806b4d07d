// One overflow-checked geometry for image and array sizes: every product of counts that sizes
// an allocation, a loop or a division (pixels, bytes, tiles, chunks per shard) is computed here
// once, with overflow and the caller's limits checked, so no other code multiplies them.
#pragma once
#include <cstdint>
#include <string>

#include "zarr/metadata.hpp"

namespace i2z {

// a * b, or a Value error naming `what` when it does not fit in 64 bits.
std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, const char* what);
std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t c, std::uint64_t d, const char* what);

// Throws Value when height x width x channels exceeds max_pixels (checked without overflow).
void check_pixel_limit(std::uint64_t height, std::uint64_t width, std::uint64_t channels, std::uint64_t max_pixels);

// Sizes of a sharded 4-D image array (N, C, H, W), inner chunk (n, C, h, w), shards of whole
// chunk rows. Construction validates every product; the members are then safe to combine.
struct ArrayGeometry {
  std::uint64_t N, C, H, W, n, h, w, ty, tx, rows, rows_per_shard, item;
  std::uint64_t image_bytes_, tile_bytes_, row_bytes_;
  explicit ArrayGeometry(const ArrayMeta& m);
  std::uint64_t image_bytes() const { return image_bytes_; }
  std::uint64_t tile_bytes() const { return tile_bytes_; }
  std::uint64_t row_bytes() const { return row_bytes_; }  // n images
  std::uint64_t tiles_per_row() const { return ty * tx; }
};

// The memory one worker may hold (decoded + working buffers): `total` (0 = derived from the
// machine: half of the physical memory or of the cgroup limit) divided among the workers.
std::uint64_t worker_memory_budget(std::uint64_t total, unsigned workers);

// "12.3 MiB"
std::string mib_text(std::uint64_t bytes);

}  // namespace i2z
