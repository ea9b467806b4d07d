// Planning: from image count, channels, size and dtype to the array metadata (chunk and
// shard shape, codecs, attributes).
#pragma once
#include <cstdint>

#include "i2z/convert.hpp"
#include "zarr/metadata.hpp"

namespace i2z {

// Target uncompressed shard size for the automatic shard_images (README: "Store layout").
constexpr std::uint64_t kTargetShardBytes = std::uint64_t{128} << 20;
// A shard index holds 16 bytes per inner chunk; keep it far below what readers cache.
constexpr std::uint64_t kMaxChunksPerShard = std::uint64_t{1} << 16;

ArrayMeta plan_array(std::uint64_t N, std::uint32_t C, std::uint64_t H, std::uint64_t W, DType dtype,
                     const ConvertOptions& options);

// Group attributes of design §2 that the engine knows; `extra` (from Python) is merged in.
nlohmann::json group_attributes(const ArrayMeta& meta, const ConvertOptions& options, const nlohmann::json& extra);

}  // namespace i2z
