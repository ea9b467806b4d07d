#include "pipeline/plan.hpp"

#include <algorithm>

#include "codecs/codec.hpp"
#include "i2z/error.hpp"
#include "pipeline/geometry.hpp"

namespace i2z {

ArrayMeta plan_array(std::uint64_t N, std::uint32_t C, std::uint64_t H, std::uint64_t W, DType dtype,
                     const ConvertOptions& o) {
  if (o.chunk_shape.size() != 3)
    fail(ErrorKind::Value, "chunk_shape must have 3 entries (images, height, width), got " +
                               std::to_string(o.chunk_shape.size()));
  for (auto v : o.chunk_shape)
    if (v == 0) fail(ErrorKind::Value, "chunk_shape entries must be >= 1");
  if (C == 0 || H == 0 || W == 0) fail(ErrorKind::Value, "images must have at least one channel and pixel");
  ArrayMeta m;
  m.shape = {N, C, H, W};
  m.dtype = dtype;
  const std::uint64_t n = std::max<std::uint64_t>(1, std::min(o.chunk_shape[0], std::max<std::uint64_t>(N, 1)));
  const std::uint64_t h = std::min(o.chunk_shape[1], H), w = std::min(o.chunk_shape[2], W);
  m.inner_chunk = {n, C, h, w};
  const std::uint64_t tiles = checked_mul(H / h + (H % h != 0), W / w + (W % w != 0), "tiles per image");
  const std::uint64_t image_bytes = checked_mul(C, H, W, dtype_size(dtype), "image size (C x H x W x item size)");
  std::uint64_t s = o.shard_images;
  if (s == 0) {
    s = std::max<std::uint64_t>(1, kTargetShardBytes / image_bytes);
    s = std::min(s, std::max<std::uint64_t>(1, kMaxChunksPerShard / tiles) * n);
    s = std::max(n, s / n * n);
    // A store smaller than one shard gets one shard of its own size (rounded up to whole
    // chunks) rather than an index for thousands of absent images; appends add shards of it.
    s = std::min(s, std::max(n, (N + n - 1) / n * n));
  } else if (s % n != 0) {
    fail(ErrorKind::Value, "shard_images (" + std::to_string(s) + ") must be a multiple of chunk_shape[0] (" +
                               std::to_string(n) + ")");
  } else if (s / n > kMaxChunksPerShard / tiles) {
    // The same bound as the automatic choice: the shard index stays small enough for readers.
    fail(ErrorKind::Value, "shard_images=" + std::to_string(s) + " gives " + std::to_string(s / n) + " x " +
                               std::to_string(tiles) + " inner chunks per shard, above the limit of " +
                               std::to_string(kMaxChunksPerShard) + "; use at most " +
                               std::to_string(std::max<std::uint64_t>(1, kMaxChunksPerShard / tiles) * n) +
                               " or a larger chunk_shape");
  }
  // Zarr requires the shard shape to be a multiple of the inner chunk: round H and W up to
  // whole tiles (the part past the image edge is fill value, as in any edge chunk).
  m.chunk_grid = {s, C, (H + h - 1) / h * h, (W + w - 1) / w * w};
  m.sharded = true;
  m.index_at_end = true;
  std::vector<std::unique_ptr<BytesCodec>> codecs;
  if (auto c = make_compressor(o.compressor, o.clevel, dtype_size(dtype))) codecs.push_back(std::move(c));
  if (o.checksum) codecs.push_back(make_crc32c_codec(nullptr, dtype_size(dtype)));
  m.chain = std::make_shared<CodecChain>(false, dtype_size(dtype), std::move(codecs));
  m.dimension_names = {"image", "channel", "y", "x"};
  m.fill_value = 0;
  return m;
}

nlohmann::json group_attributes(const ArrayMeta& m, const ConvertOptions& o, const nlohmann::json& extra) {
  nlohmann::json a = extra.is_object() ? extra : nlohmann::json::object();
  a["total_images"] = m.shape[0];
  a["image_shape"] = {m.shape[1], m.shape[2], m.shape[3]};
  a["chunk_shape"] = m.inner_chunk;
  a["shard_shape"] = m.chunk_grid;
  a["compressor"] = o.compressor;
  a["compression_level"] = o.clevel;
  a["dtype"] = std::string(dtype_name(m.dtype));
  if (!a.contains("append_history")) a["append_history"] = nlohmann::json::array();
  a["software"] = {{"name", "images_to_zarr"}, {"version", version()}};
  return a;
}

}  // namespace i2z
