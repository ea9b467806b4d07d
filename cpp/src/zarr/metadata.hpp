// zarr.json documents of the "images" array and its group (zarr-v3-format.md §1, §2, §4.1).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "codecs/codec.hpp"
#include "i2z/dtype.hpp"

namespace i2z {

// A parsed (or to-be-written) array document, resolved once: the hot paths never touch JSON.
struct ArrayMeta {
  std::vector<std::uint64_t> shape;
  DType dtype = DType::u8;
  std::vector<std::uint64_t> chunk_grid;   // outer chunk shape = shard shape when sharded
  bool sharded = false;
  std::vector<std::uint64_t> inner_chunk;  // sharded only
  bool index_at_end = true;
  std::shared_ptr<const CodecChain> chain;  // chunk chain (inner chain when sharded)
  nlohmann::json attributes = nlohmann::json::object();
  std::vector<std::string> dimension_names;
  double fill_value = 0;  // only 0 is written; other values are read for completeness

  // Chunk (or inner chunk when sharded) shape: the unit one codec call handles.
  const std::vector<std::uint64_t>& read_chunk() const { return sharded ? inner_chunk : chunk_grid; }
  std::uint64_t chunks_per_shard() const;  // product of chunk_grid / inner_chunk (1 if unsharded)
  std::uint64_t read_chunk_bytes() const;  // raw size of one (inner) chunk
};

nlohmann::json array_meta_to_json(const ArrayMeta& meta);
// Accepts what zarr-python / tensorstore write (format note §6); rejects what we cannot read
// with ValueError naming the field.
ArrayMeta parse_array_meta(const std::string& text, const std::string& where);

// `children`: name -> zarr.json document of each child node, written as the group's inline
// "consolidated_metadata" (zarr-python 3's layout); none when empty.
nlohmann::json group_json(const nlohmann::json& attributes, const nlohmann::json& children = nlohmann::json::object());

// Shard key "c/<i>/0/0/0" for a 4-D array; `prefix` like "images/".
std::string chunk_key(const std::string& prefix, const std::vector<std::uint64_t>& coords);

// JSON text as written (2-space indent, like zarr-python).
std::string dump_json(const nlohmann::json& j);

}  // namespace i2z
