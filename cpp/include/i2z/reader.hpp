// Fast random-access reader of a Zarr v3 array along its first axis ("image" axis).
//
// Reads any regular-grid Zarr v3 array of rank >= 1 whose codecs this library knows, sharded
// (`sharding_indexed`, index at the start or the end) or not, written by us or by zarr-python /
// tensorstore. A read fetches only what it needs: the index of each touched shard (one ranged
// read of 16*N+4 bytes, then cached) and the touched inner chunks (one ranged read per run of
// adjacent chunks). Chunks are decoded in parallel on a small pool of worker threads (the
// calling thread works too; a read of one chunk uses no other thread) straight into the
// caller's buffer. Missing shards, missing chunks
// and empty index entries read as the fill value.
//
// The array is a snapshot: zarr.json is parsed once at open, and cached shard indexes assume the
// shards do not change while the reader is open (reopen after an append).
//
// Errors (i2z::Error): an index >= shape[0] -> ErrorKind::Index; damaged data (index CRC
// mismatch, truncated shard, index entry beyond the object, chunk decoding to the wrong size,
// codec failure) -> ErrorKind::Corrupt with a message naming the object key; unreadable or
// unsupported metadata -> ErrorKind::Value; no array document -> ErrorKind::FileNotFound.
//
// Thread-safety: every const member function may be called concurrently from several threads.
// Fork-safety: a reader used in a forked child process decodes on the calling thread only.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "i2z/dtype.hpp"
#include "i2z/store.hpp"

namespace i2z {

struct ReaderOptions {
  // Threads decoding one read, the caller included; 0 = the CPUs this process may run on (its
  // affinity mask), at most 8. A read of one chunk is always decoded on the calling thread.
  unsigned threads = 0;
  // Bound of the shard-index cache (16 bytes per inner chunk of each cached shard).
  std::size_t index_cache_bytes = std::size_t{64} << 20;
};

class ArrayReader {
 public:
  // Opens the array whose document is `<prefix>zarr.json` ("images/" or "" for a root array).
  ArrayReader(std::shared_ptr<Store> store, std::string prefix, ReaderOptions options = {});
  ~ArrayReader();
  ArrayReader(const ArrayReader&) = delete;
  ArrayReader& operator=(const ArrayReader&) = delete;

  const std::vector<std::uint64_t>& shape() const;
  DType dtype() const;
  std::uint64_t length() const { return shape()[0]; }
  // Bytes of one item (one index along axis 0): product(shape[1:]) * dtype size.
  std::size_t item_bytes() const;
  // The array document's "attributes" object as JSON text ("{}" when absent).
  std::string attributes_json() const;
  // "<store location>/<prefix>" for messages.
  std::string describe() const;

  // Copies items indices[0..k) (any order, repeats allowed) into `out`, a C-contiguous buffer of
  // k * item_bytes() bytes laid out as (k, shape[1], ..., shape[rank-1]). Throws Index for an
  // index >= length() before touching `out`.
  void read(std::span<const std::uint64_t> indices, void* out) const;
  // Items [begin, end) into `out` ((end - begin) * item_bytes() bytes); Index error unless
  // begin <= end <= length().
  void read_range(std::uint64_t begin, std::uint64_t end, void* out) const;

  // Store requests made so far (shard-index reads, chunk reads), for tests and benchmarks.
  struct Stats {
    std::uint64_t index_reads = 0, chunk_reads = 0;
  };
  Stats stats() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// The images array of a store: "images/" under a root group, or the root itself when the root
// zarr.json is an array (a bare array written by zarr-python). FileNotFound when the store has
// no root zarr.json; Value when it is not a Zarr v3 document or a group without "images".
std::unique_ptr<ArrayReader> open_image_array(std::shared_ptr<Store> store, ReaderOptions options = {});

// The root group's "attributes" as JSON text; "{}" when the root zarr.json is missing, is an
// array or has no attributes object. A root zarr.json that is not a Zarr v3 JSON object throws
// ErrorKind::Value naming it, as open_image_array() does: a damaged store must not pass for one
// without attributes.
std::string group_attributes_json(Store& store);

}  // namespace i2z
