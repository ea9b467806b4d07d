// Conversion entry points: files or an in-memory 4-D array -> sharded Zarr v3 array "images".
// The caller (Python) owns the Parquet side-car; the engine hands it one ImageRecord per image,
// shard by shard as shards are committed (RecordsFn), and keeps none of them.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "i2z/dtype.hpp"
#include "i2z/store.hpp"

namespace i2z {

// A FITS HDU selector: index or EXTNAME. Several selectors stack 2-D HDUs as channels.
using FitsSelector = std::variant<int, std::string>;

struct ConvertOptions {
  std::vector<std::uint64_t> chunk_shape{1, 256, 256};  // (n, h, w); clamped to the array
  std::uint64_t shard_images = 0;                       // 0 = automatic (README: ~128 MiB shards)
  std::string compressor = "lz4";                       // lz4 | blosc | zstd | gzip | zlib | none
  int clevel = 1;
  // crc32c as the last inner codec: a damaged chunk fails to read instead of decoding to wrong
  // pixels (4 bytes per chunk). Appends keep the store's own chain.
  bool checksum = true;
  std::optional<DType> dtype;                           // default: promotion of the inputs
  std::vector<FitsSelector> fits_extension;             // empty = first HDU with image data
  std::optional<std::pair<std::uint64_t, std::uint64_t>> resize;  // (H, W)
  int interpolation_order = 1;
  bool pad = false;  // place each image top-left on a canvas of the largest H x W
  unsigned num_workers = 8;
  std::uint64_t max_pixels = std::uint64_t{1} << 31;   // per image; larger ones are errors
  // Files with more channels are per-image errors. 0 = automatic: a file with more than 16 and
  // more than 16 x the median channel count of the run is an error (one header cannot inflate C).
  std::uint32_t max_channels = 0;
  // Bytes all workers together may hold for decoding (decoded + working buffers); each worker
  // gets max_memory / num_workers. 0 = half of the machine's memory (or of its cgroup limit).
  std::uint64_t max_memory = 0;
  // Free-form JSON object merged into the group attributes (creation_info etc.).
  std::string extra_attributes_json = "{}";
  // Continue an interrupted run of the same inputs and options from its last completed shard.
  bool resume = false;
  // Options of a remote store ("s3://..."): endpoint, credentials, ... (see i2z/s3.hpp).
  std::map<std::string, std::string> storage_options;
};

enum class WriteMode {
  Create,     // the store must not exist
  Overwrite,  // replace an existing Zarr store (never any other path)
  Append,     // extend an existing store along axis 0
};

// One row of the side-car, as the engine knows it. Only the records of the shards in flight
// exist at any time; they are filled when the image is decoded.
struct ImageRecord {
  std::string source_path;         // empty for in-memory input
  std::string format;              // "png", "jpeg", "tiff", "fits", "" (memory)
  std::uint64_t file_size_bytes = 0;
  std::string dtype;               // numpy name of the decoded pixels
  std::vector<std::uint64_t> shape;  // as decoded (e.g. H,W,3 for RGB PNG; C,H,W for a FITS cube)
  std::string fits_extension;      // as used, e.g. "1" or "SCI" or "[0, 1, \"ERR\"]"
  std::string fits_header_json;    // the HDU's cards as a JSON object (FITS only)
  double min_value = 0, max_value = 0, mean_value = 0;  // of the stored pixels
  std::string error;               // empty when fine
};

struct Progress {
  std::uint64_t done = 0, total = 0, failed = 0;
  std::vector<std::string> warnings;  // new since the last call
};
// Called on the calling thread about every 100 ms and once at the end. It may throw to
// cancel the conversion (the Python binding rethrows KeyboardInterrupt this way).
using ProgressFn = std::function<void(const Progress&)>;
// Receives the records of the new images of one committed shard; `first_index` is the array
// index of records[0]. Called on the calling thread (with the progress calls), in shard order,
// once for every shard of the run, including those a resume skips. It may throw to cancel.
using RecordsFn = std::function<void(std::uint64_t first_index, std::vector<ImageRecord>&& records)>;

struct ArrayInput {
  const void* data = nullptr;  // C-contiguous (N, C, H, W)
  DType dtype = DType::u8;
  std::uint64_t n = 0, c = 0, h = 0, w = 0;
};

struct ConvertResult {
  std::vector<std::uint64_t> shape;  // N, C, H, W of the array after commit
  DType dtype = DType::u8;
  std::uint64_t failed = 0;          // images of this run (resumed shards included) with an error
  std::uint64_t start_index = 0;     // index of the first new image (N before an append)
  std::vector<std::string> warnings;  // raised while planning (e.g. dtype conversion on append)
};

// The plan of a conversion: everything a process needs to write some of its shards.
struct ConversionPlan {
  std::string json;                 // pass to write_shards()
  std::uint64_t first_shard = 0;    // shards [first_shard, end_shard) remain to be written
  std::uint64_t end_shard = 0;
  std::uint64_t shard_images = 0;
  std::uint64_t start_index = 0;    // image index of the first new image (N before an append)
  std::uint64_t total_images = 0;   // N after the run
  // Shards [start_index / shard_images, first_shard) were finished by an interrupted run; their
  // records are read back one shard at a time (saved_records()).
  std::vector<std::string> warnings;
  // The side-car: the caller writes this run's parts ("part-<12-digit first index>.parquet",
  // key-value metadata i2z.run_id = run_id) into sidecar_staging; commit() publishes them with
  // the store into `sidecar` (a folder beside the store's real location).
  std::string sidecar, sidecar_staging, run_id;
  // A resume of a run that the store already holds (same inputs and options): nothing to do;
  // [start_index, total_images) are that run's images and run_id its id. Call commit().
  bool committed = false;
};

// A conversion holding the store's writer lock until commit() or abort() (pipeline/commit.hpp:
// one strategy per kind of store). New local stores are staged in "<store>.i2z-tmp" and renamed
// into place with their side-car by commit(); an append writes its new shards in place
// (invisible until the array's zarr.json changes) and commit() publishes the side-car parts,
// then images/zarr.json (the commit point) and the group attributes, under a journal that the
// next writer completes if this one is killed. The caller writes the side-car parts between
// run() and commit().
// Distributed use: plan(), write_shards() for disjoint shard ranges (in any process that sees
// the store), then finish() and commit() here.
class Conversion {
 public:
  virtual ~Conversion() = default;
  // plan() + write_shards() of every remaining shard on this machine + finish(). `records`
  // gets every shard's records (saved ones of a resume first), in order.
  virtual ConvertResult run(const ProgressFn& progress, const RecordsFn& records = {}) = 0;
  // Probes the inputs (or takes `probes_json`, the concatenated results of probe_files_json()
  // for the files in order) and plans the array. Idempotent.
  virtual const ConversionPlan& plan(const std::vector<std::string>& probes_json = {}) = 0;
  // The records of a shard that a resumed run had finished (see ConversionPlan).
  virtual std::vector<ImageRecord> saved_records(std::uint64_t shard) = 0;
  // Writes the array and group documents (once all shards are written).
  virtual void finish() = 0;
  virtual void commit() = 0;
  virtual void abort() = 0;
};

// Header-only pass over files (for distributed probing); feed the results to plan().
std::string probe_files_json(const std::vector<std::string>& files, const ConvertOptions& options);

// Writes shards [first_shard, end_shard) of a plan. `files` are the input files of exactly the
// images of those shards that are new (for a file conversion). Their records go to `records`
// shard by shard, on the calling thread.
void write_shards(const std::string& plan_json, const std::vector<std::string>& files, std::uint64_t first_shard,
                  std::uint64_t end_shard, unsigned workers, const ProgressFn& progress, const RecordsFn& records);

// Lists supported image files under the folders (sorted by path, extensions case-insensitive,
// symlink loops skipped, a file reached twice kept once). `include`/`exclude` are fnmatch globs
// (see `selected`). Missing folders are reported through `warnings`.
std::vector<std::string> discover_files(const std::vector<std::string>& folders, bool recursive,
                                        std::vector<std::string>* warnings,
                                        const std::vector<std::string>& include = {},
                                        const std::vector<std::string>& exclude = {});
// Whether a file passes the globs: a pattern containing '/' is matched against the path
// relative to its input folder, others against the file name; no include = everything.
bool selected(const std::string& relative, const std::vector<std::string>& include,
              const std::vector<std::string>& exclude);

std::unique_ptr<Conversion> convert_files(const std::string& store_path, std::vector<std::string> files,
                                          const ConvertOptions& options, WriteMode mode);
// `input.data` must stay alive until run() returns; it is read in place (no copy).
std::unique_ptr<Conversion> convert_array(const std::string& store_path, const ArrayInput& input,
                                          const ConvertOptions& options, WriteMode mode);

// Supported extensions, lower case with the dot (".fits", ".fits.gz", ".png", ...).
const std::vector<std::string>& supported_extensions();
const char* version();

}  // namespace i2z
