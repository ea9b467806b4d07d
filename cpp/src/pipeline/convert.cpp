// convert_files / convert_array: planning, the writer lock, staging, resume and commit.
//
// Progress of a run lives in "<work store>/.i2z-progress/": plan.json (a fingerprint of the
// inputs and options) and records/<shard>.json, written after each shard is committed. Shards
// are committed in order, so the completed work is always a prefix of the shards; resume skips
// that prefix and rebuilds its side-car rows from the saved records.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <optional>

#include "formats/format.hpp"
#include "i2z/convert.hpp"
#include "i2z/error.hpp"
#include "i2z/reader.hpp"
#include "pipeline/engine.hpp"
#include "pipeline/lock.hpp"
#include "pipeline/log.hpp"
#include "pipeline/plan.hpp"
#include "pipeline/records_io.hpp"
#include "pipeline/sources.hpp"

#ifndef I2Z_VERSION
#define I2Z_VERSION "0.0.0"
#endif

namespace i2z {
namespace fs = std::filesystem;
using nlohmann::json;

const char* version() { return I2Z_VERSION; }

namespace {

constexpr const char* kArrayPrefix = "images/";
constexpr const char* kProgress = ".i2z-progress/";

std::span<const std::uint8_t> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::optional<std::string> get_text(Store& store, const std::string& key) {
  auto b = store.get(key);
  if (!b) return std::nullopt;
  return std::string(b->begin(), b->end());
}

bool is_zarr_store(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec) && fs::exists(p / "zarr.json", ec);
}

std::string strip_slash(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// What the run converts: a list of files or an in-memory array.
struct Input {
  std::vector<std::string> files;
  std::optional<ArrayInput> array;
};

// The planned array contents of this run's new images.
struct NewImages {
  std::uint64_t count = 0;
  std::uint32_t C = 0;
  std::uint64_t H = 0, W = 0;
  DType dtype = DType::u8;  // promoted dtype of the inputs
  std::vector<Probed> probed;
  std::vector<ImageRecord> records;  // probe-time records (files)
};

std::string size_text(std::uint64_t h, std::uint64_t w) { return std::to_string(h) + "x" + std::to_string(w); }

class ConversionImpl final : public Conversion {
 public:
  ConversionImpl(const std::string& path, Input input, const ConvertOptions& o, WriteMode mode)
      : path_(strip_slash(path)), input_(std::move(input)), options_(o), mode_(mode), lock_(path_) {
    fo_.fits_extension = o.fits_extension;
    fo_.max_pixels = o.max_pixels;
    std::error_code ec;
    if (mode_ == WriteMode::Append) {
      if (!fs::exists(path_, ec)) fail(ErrorKind::FileNotFound, "cannot append: store '" + path_ + "' does not exist");
      if (!is_zarr_store(path_)) fail(ErrorKind::Value, "cannot append: '" + path_ + "' is not a Zarr store");
      work_ = open_local_store(path_);
    } else {
      if (fs::exists(path_, ec)) {
        if (mode_ == WriteMode::Create)
          fail(ErrorKind::FileExists, "store '" + path_ +
                                          "' already exists; pass overwrite=True to replace it or append=True to add to it");
        if (!is_zarr_store(path_)) fail(ErrorKind::Value, "refusing to overwrite '" + path_ + "': it is not a Zarr store");
      }
      staging_ = path_ + ".i2z-tmp";
      if (!options_.resume) fs::remove_all(staging_, ec);
      work_ = open_local_store(staging_);
    }
  }
  ~ConversionImpl() override {
    if (!committed_) abort();
  }

  ConvertResult run(const ProgressFn& progress) override {
    ConvertResult res;
    work_->remove_incomplete();  // we hold the lock: any partial object is a dead writer's
    NewImages add = plan_inputs();
    std::uint64_t n_old = 0;
    ArrayMeta meta;
    std::shared_ptr<const ArrayReader> old_reader;
    if (mode_ == WriteMode::Append) {
      old_reader = open_image_array(work_);
      const auto text = get_text(*work_, std::string(kArrayPrefix) + "zarr.json");
      meta = parse_array_meta(text.value_or(""), path_ + "/images/zarr.json");
      if (meta.shape.size() != 4 || !meta.sharded || !meta.index_at_end)
        fail(ErrorKind::Value, "cannot append to '" + path_ + "': not a 4-D sharded images array of this layout");
      n_old = meta.shape[0];
      check_append_shape(meta, add);
      if (add.dtype != meta.dtype && !options_.dtype)
        res.warnings.push_back("appending " + std::string(dtype_name(add.dtype)) + " images to a " +
                               std::string(dtype_name(meta.dtype)) + " store: values are converted (rounded and clipped)");
      else if (options_.dtype && *options_.dtype != meta.dtype)
        res.warnings.push_back("dtype=" + std::string(dtype_name(*options_.dtype)) + " ignored: the store is " +
                               std::string(dtype_name(meta.dtype)));
      meta.shape[0] = n_old + add.count;
      group_attrs_ = json::parse(get_text(*work_, "zarr.json").value_or("{}"), nullptr, false);
      group_attrs_ = group_attrs_.is_object() ? group_attrs_.value("attributes", json::object()) : json::object();
    } else {
      meta = plan_array(add.count, add.C, add.H, add.W, options_.dtype.value_or(add.dtype), options_);
      json extra = json::parse(options_.extra_attributes_json, nullptr, false);
      if (extra.is_discarded()) fail(ErrorKind::Value, "invalid extra attributes JSON");
      group_attrs_ = group_attributes(meta, options_, extra);
    }
    const std::uint64_t N = meta.shape[0];
    const std::uint64_t S = meta.chunk_grid[0], n = meta.inner_chunk[0];
    const std::uint64_t image_bytes = meta.shape[1] * meta.shape[2] * meta.shape[3] * dtype_size(meta.dtype);

    // Sources: the new images, behind the append wrapper when old images share their chunk row.
    std::unique_ptr<ImageSource> source;
    if (input_.array) source = make_array_source(*input_.array, meta.dtype);
    else source = make_file_source(input_.files, add.probed, fo_, static_cast<std::uint32_t>(meta.shape[1]),
                                   meta.shape[2], meta.shape[3], meta.dtype, options_);
    if (n_old > 0) source = make_append_source(n_old, std::move(source), old_reader, image_bytes);

    EngineJob job;
    job.store = work_.get();
    job.array_prefix = kArrayPrefix;
    job.meta = &meta;
    job.source = source.get();
    job.first_shard = n_old / S;
    job.end_shard = (N + S - 1) / S;
    job.carry_rows = (n_old % S) / n;
    job.workers = options_.num_workers;

    // Resume: skip the prefix of shards whose object and records both exist.
    const std::string fingerprint = plan_fingerprint(meta, n_old, add).dump();
    const std::string plan_key = std::string(kProgress) + "plan.json";
    std::vector<ImageRecord> done_records;
    if (options_.resume) {
      const auto saved = get_text(*work_, plan_key);
      if (saved && *saved != fingerprint)
        fail(ErrorKind::Value, "cannot resume '" + path_ + "': the inputs or options differ from the interrupted run");
      if (saved) {
        while (job.first_shard < job.end_shard) {
          const auto recs = get_text(*work_, records_key(job.first_shard));
          if (!recs || !work_->exists(chunk_key(kArrayPrefix, {job.first_shard, 0, 0, 0}))) break;
          for (auto& r : records_from_json(*recs)) done_records.push_back(std::move(r));
          ++job.first_shard;
          job.carry_rows = 0;
        }
      }
    } else {
      for (const auto& k : work_->list(kProgress)) work_->erase(k);
    }
    work_->set(plan_key, as_bytes(fingerprint));

    // Records of the images the engine encodes: [base, N). Images below n_old are old ones
    // re-encoded with the partial chunk row; their records are placeholders.
    const std::uint64_t base = std::min(engine_first_image(job), N);
    std::vector<ImageRecord> records(N - base);
    for (std::uint64_t i = std::max(base, n_old); i < N; ++i) {
      if (!add.records.empty()) records[i - base] = std::move(add.records[i - n_old]);
    }
    job.record_base = base;
    job.on_shard_done = [&](std::uint64_t s) {
      const std::uint64_t lo = std::max(s * S, n_old), hi = std::min((s + 1) * S, N);
      work_->set(records_key(s), as_bytes(records_to_json({records.data() + (lo - base), hi - lo})));
    };
    run_engine(job, records, progress);

    res.records = std::move(done_records);
    for (std::uint64_t i = std::max(base, n_old); i < N; ++i) res.records.push_back(std::move(records[i - base]));
    for (const auto& r : res.records) res.failed += !r.error.empty();
    res.shape = meta.shape;
    res.dtype = meta.dtype;
    res.start_index = n_old;

    group_attrs_["total_images"] = N;
    if (mode_ == WriteMode::Append) {
      if (!group_attrs_.contains("append_history") || !group_attrs_["append_history"].is_array())
        group_attrs_["append_history"] = json::array();
      group_attrs_["append_history"].push_back(
          {{"appended_count", add.count}, {"start_index", n_old}, {"end_index", N}});
    }
    array_json_ = dump_json(array_meta_to_json(meta));
    group_json_ = dump_json(group_json(group_attrs_));
    if (mode_ != WriteMode::Append) write_metadata();  // inside staging: invisible until the rename
    ran_ = true;
    return res;
  }

  void commit() override {
    if (committed_) return;
    if (!ran_) fail(ErrorKind::Value, "commit() before run()");
    std::error_code ec;
    if (mode_ == WriteMode::Append) {
      write_metadata();  // images/zarr.json first: the commit point
      clear_progress();
    } else {
      clear_progress();
      const std::string old = path_ + ".i2z-old";
      if (fs::exists(path_, ec)) {
        if (!is_zarr_store(path_)) fail(ErrorKind::Value, "refusing to overwrite '" + path_ + "': it is not a Zarr store");
        fs::remove_all(old, ec);
        fs::rename(path_, old, ec);
        if (ec) fail(ErrorKind::IO, "cannot move the old store '" + path_ + "' aside: " + ec.message());
      }
      fs::rename(staging_, path_, ec);
      if (ec) fail(ErrorKind::IO, "cannot rename '" + staging_ + "' to '" + path_ + "': " + ec.message());
      fs::remove_all(old, ec);
    }
    committed_ = true;
    lock_.release();
  }

  // Keeps the staged work (resume can continue it); only the lock is released.
  void abort() override { lock_.release(); }

 private:
  static std::string records_key(std::uint64_t shard) {
    return std::string(kProgress) + "records/" + std::to_string(shard) + ".json";
  }

  void write_metadata() {
    work_->set(std::string(kArrayPrefix) + "zarr.json", as_bytes(array_json_));
    work_->set("zarr.json", as_bytes(group_json_));
  }

  void clear_progress() {
    for (const auto& k : work_->list(kProgress)) work_->erase(k);
    std::error_code ec;
    fs::remove_all(fs::path(mode_ == WriteMode::Append ? path_ : staging_) / ".i2z-progress", ec);
  }

  NewImages plan_inputs() {
    NewImages a;
    if (input_.array) {
      const ArrayInput& in = *input_.array;
      a.count = in.n;
      a.C = static_cast<std::uint32_t>(in.c);
      a.H = in.h;
      a.W = in.w;
      a.dtype = in.dtype;
      return a;
    }
    a.count = input_.files.size();
    probe_files(input_.files, fo_, options_.num_workers, a.probed, a.records);
    std::optional<DType> dtype;
    std::uint64_t first_ok = a.count;
    for (std::uint64_t i = 0; i < a.count; ++i) {
      const Probed& p = a.probed[i];
      if (!p.ok) continue;
      if (first_ok == a.count) {
        first_ok = i;
        a.H = p.height;
        a.W = p.width;
      } else if (options_.pad) {
        a.H = std::max(a.H, p.height);
        a.W = std::max(a.W, p.width);
      } else if (!options_.resize && (p.height != a.H || p.width != a.W)) {
        fail(ErrorKind::Value, "image '" + input_.files[i] + "' is " + size_text(p.height, p.width) + " but '" +
                                   input_.files[first_ok] + "' is " + size_text(a.H, a.W) +
                                   "; all images must have the same size unless resize=(H, W) or pad=True is given");
      }
      a.C = std::max(a.C, p.channels);
      dtype = dtype ? dtype_promote(*dtype, p.dtype) : p.dtype;
    }
    if (first_ok == a.count)
      fail(ErrorKind::Value, "none of the " + std::to_string(a.count) + " images could be read; first error: " +
                                 input_.files[0] + ": " + a.records[0].error);
    if (options_.resize) {
      a.H = options_.resize->first;
      a.W = options_.resize->second;
    }
    a.dtype = *dtype;
    return a;
  }

  void check_append_shape(const ArrayMeta& meta, NewImages& add) const {
    const std::uint64_t C = meta.shape[1], H = meta.shape[2], W = meta.shape[3];
    auto shape_text = [](std::uint64_t c, std::uint64_t h, std::uint64_t w) {
      return "(" + std::to_string(c) + ", " + std::to_string(h) + ", " + std::to_string(w) + ")";
    };
    // Files follow the store's channel count like a fresh conversion (fewer channels are
    // normalised); arrays must match exactly. Padding targets the store's canvas.
    const bool c_ok = input_.array ? add.C == C : add.C <= C;
    const bool hw_ok = (add.H == H && add.W == W) || (options_.pad && add.H <= H && add.W <= W);
    if (!c_ok || !hw_ok)
      fail(ErrorKind::Value, "cannot append images of shape (C, H, W) = " + shape_text(add.C, add.H, add.W) +
                                 " to a store of shape " + shape_text(C, H, W));
    add.C = static_cast<std::uint32_t>(C);
    add.H = H;
    add.W = W;
  }

  json plan_fingerprint(const ArrayMeta& meta, std::uint64_t n_old, const NewImages& add) const {
    // FNV-1a over the input paths: a different file list must not resume this run.
    std::uint64_t h = 1469598103934665603ull;
    for (const auto& f : input_.files) {
      for (unsigned char c : f) h = (h ^ c) * 1099511628211ull;
      h = (h ^ 0xff) * 1099511628211ull;
    }
    json fe = json::array();
    for (const auto& s : options_.fits_extension) std::visit([&](const auto& v) { fe.push_back(v); }, s);
    return {{"engine", version()},
            {"n_old", n_old},
            {"count", add.count},
            {"array", array_meta_to_json(meta)},
            {"files", std::to_string(h)},
            {"memory", input_.array.has_value()},
            {"resize", options_.resize ? json{options_.resize->first, options_.resize->second} : json(nullptr)},
            {"order", options_.interpolation_order},
            {"pad", options_.pad},
            {"fits_extension", fe}};
  }

  std::string path_, staging_;
  Input input_;
  ConvertOptions options_;
  WriteMode mode_;
  WriterLock lock_;
  FormatOptions fo_;
  std::shared_ptr<Store> work_;
  json group_attrs_;
  std::string array_json_, group_json_;
  bool ran_ = false, committed_ = false;
};

void validate_options(const ConvertOptions& o) {
  if (o.interpolation_order < 0 || o.interpolation_order > 5)
    fail(ErrorKind::Value, "interpolation_order must be between 0 and 5, got " + std::to_string(o.interpolation_order));
  if (o.resize && (o.resize->first == 0 || o.resize->second == 0))
    fail(ErrorKind::Value, "resize must be two positive integers (height, width)");
  if (o.resize && o.pad) fail(ErrorKind::Value, "resize and pad cannot be combined");
}

}  // namespace

std::unique_ptr<Conversion> convert_files(const std::string& store_path, std::vector<std::string> files,
                                          const ConvertOptions& options, WriteMode mode) {
  validate_options(options);
  if (files.empty()) fail(ErrorKind::Value, "no supported image files to convert");
  Input in;
  in.files = std::move(files);
  return std::make_unique<ConversionImpl>(store_path, std::move(in), options, mode);
}

std::unique_ptr<Conversion> convert_array(const std::string& store_path, const ArrayInput& input,
                                          const ConvertOptions& options, WriteMode mode) {
  validate_options(options);
  if (input.c == 0 || input.h == 0 || input.w == 0)
    fail(ErrorKind::Value, "images must have non-zero channel, height and width dimensions");
  if (input.n == 0 && mode == WriteMode::Append) fail(ErrorKind::Value, "nothing to append: images is empty");
  Input in;
  in.array = input;
  return std::make_unique<ConversionImpl>(store_path, std::move(in), options, mode);
}

}  // namespace i2z
