// The sharding_indexed index (zarr-v3-format.md §4.2): pure functions, no I/O.
// Stored as 16*N little-endian bytes ((offset, nbytes) per inner chunk, C order) + CRC-32C (LE).
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace i2z {

struct ChunkLocation {
  static constexpr std::uint64_t kEmpty = ~std::uint64_t{0};
  std::uint64_t offset = kEmpty;
  std::uint64_t nbytes = kEmpty;
  bool empty() const { return offset == kEmpty && nbytes == kEmpty; }
};

inline std::uint64_t shard_index_size(std::uint64_t n_chunks) { return 16 * n_chunks + 4; }

std::vector<std::uint8_t> encode_shard_index(std::span<const ChunkLocation> entries);
// Checks size, CRC and that every non-empty entry lies inside [0, object_size) (object_size 0 =
// unchecked). Throws i2z::Error(Corrupt) naming the problem.
std::vector<ChunkLocation> decode_shard_index(std::span<const std::uint8_t> bytes, std::uint64_t n_chunks,
                                              std::uint64_t object_size);

}  // namespace i2z
