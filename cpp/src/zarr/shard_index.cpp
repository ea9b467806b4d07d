// Shard index codec: bytes(little) + crc32c, the only index_codecs we write or accept.
#include "zarr/shard_index.hpp"

#include <string>

#include "codecs/codec.hpp"
#include "i2z/error.hpp"

namespace i2z {

namespace {

void put_le64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
std::uint64_t get_le64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t{p[i]} << (8 * i);
  return v;
}

}  // namespace

std::vector<std::uint8_t> encode_shard_index(std::span<const ChunkLocation> entries) {
  std::vector<std::uint8_t> out(shard_index_size(entries.size()));
  std::uint8_t* p = out.data();
  for (const auto& e : entries) {
    put_le64(p, e.offset);
    put_le64(p + 8, e.nbytes);
    p += 16;
  }
  const std::uint32_t crc = crc32c(out.data(), 16 * entries.size());  // over the entries only
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(crc >> (8 * i));
  return out;
}

std::vector<ChunkLocation> decode_shard_index(std::span<const std::uint8_t> bytes, std::uint64_t n_chunks,
                                              std::uint64_t object_size) {
  if (n_chunks > bytes.size() / 16)  // also keeps 16 * n_chunks from overflowing
    fail(ErrorKind::Corrupt, "shard index of " + std::to_string(bytes.size()) + " bytes cannot hold " +
                                 std::to_string(n_chunks) + " inner chunks");
  if (bytes.size() != shard_index_size(n_chunks))
    fail(ErrorKind::Corrupt, "shard index is " + std::to_string(bytes.size()) + " bytes, expected " +
                                 std::to_string(shard_index_size(n_chunks)) + " for " + std::to_string(n_chunks) +
                                 " inner chunks");
  const std::size_t n = static_cast<std::size_t>(16 * n_chunks);
  const std::uint32_t stored = std::uint32_t{bytes[n]} | std::uint32_t{bytes[n + 1]} << 8 |
                               std::uint32_t{bytes[n + 2]} << 16 | std::uint32_t{bytes[n + 3]} << 24;
  if (crc32c(bytes.data(), n) != stored) fail(ErrorKind::Corrupt, "shard index checksum mismatch");
  std::vector<ChunkLocation> out(static_cast<std::size_t>(n_chunks));
  for (std::size_t i = 0; i < out.size(); ++i) {
    auto& e = out[i];
    e.offset = get_le64(bytes.data() + 16 * i);
    e.nbytes = get_le64(bytes.data() + 16 * i + 8);
    if ((e.offset == ChunkLocation::kEmpty) != (e.nbytes == ChunkLocation::kEmpty))
      fail(ErrorKind::Corrupt, "shard index entry " + std::to_string(i) + " is half empty (offset " +
                                   std::to_string(e.offset) + ", nbytes " + std::to_string(e.nbytes) + ")");
    // Written as a subtraction so that huge values cannot overflow.
    if (!e.empty() && object_size > 0 && (e.offset > object_size || e.nbytes > object_size - e.offset))
      fail(ErrorKind::Corrupt, "shard index entry " + std::to_string(i) + " (offset " + std::to_string(e.offset) +
                                   ", nbytes " + std::to_string(e.nbytes) + ") lies beyond the shard's " +
                                   std::to_string(object_size) + " bytes");
  }
  return out;
}

}  // namespace i2z
