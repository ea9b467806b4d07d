// The shard-major write engine shared by file and in-memory conversion.
//
// Work unit = one "chunk row": the n images of one inner chunk along axis 0, every spatial
// tile of them. Workers take rows in order, fill them from an ImageSource, encode each tile,
// and hand the result to an ordered writer that appends tiles to the row's shard object in
// index (C) order, writing the shard index when the shard's last row lands. At most `window`
// rows are in flight, so memory is bounded by workers x row size, independent of N and of
// the shard size; output bytes do not depend on the thread count.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "i2z/convert.hpp"
#include "i2z/store.hpp"
#include "zarr/metadata.hpp"

namespace i2z {

// Supplies images [first, first + count) as C x H x W values of the store dtype, C order.
// Implementations must be safe to call from several threads for different ranges.
class ImageSource {
 public:
  virtual ~ImageSource() = default;
  // Writes the images to `scratch` and returns it, or returns a pointer to the same bytes
  // held elsewhere (zero copy). Fills one record per image. Per-image failures are recorded,
  // not thrown; an exception cancels the conversion.
  virtual const std::uint8_t* fill(std::uint64_t first, std::uint64_t count, std::uint8_t* scratch,
                                   ImageRecord* records) = 0;
};

struct EngineJob {
  Store* store = nullptr;
  std::string array_prefix;       // "images/"
  const ArrayMeta* meta = nullptr;  // sharded 4-D array: shape N,C,H,W (after this job)
  ImageSource* source = nullptr;
  std::uint64_t first_shard = 0, end_shard = 0;  // shards [first, end) to write
  // Append: the first shard already holds `carry_rows` complete chunk rows; their encoded
  // chunks are copied byte for byte from the existing object before the new rows.
  std::uint64_t carry_rows = 0;
  unsigned workers = 1;
  // Called (in shard order, on one thread at a time) after each shard object is committed, with
  // the records of the images of that shard this job encoded (records[0] is image first_image).
  // The engine keeps no records past this call.
  std::function<void(std::uint64_t shard, std::uint64_t first_image, std::vector<ImageRecord>&& records)>
      on_shard_done;
};

// Why the engine cannot write `meta` (an existing store to append to), naming what differs, or
// "" when it can: shards of whole chunk rows holding every channel and the whole image plane,
// the index at the end, chunks of all C channels.
std::string engine_layout_problem(const ArrayMeta& meta);

// First image whose row this job encodes.
std::uint64_t engine_first_image(const EngineJob& job);

// Writes the job's shards. A row's records travel with it to the writer, so only the rows in
// flight and the current shard hold records. Progress is reported on the calling thread.
void run_engine(const EngineJob& job, const ProgressFn& progress);

}  // namespace i2z
