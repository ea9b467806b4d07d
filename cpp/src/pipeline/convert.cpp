// convert_files / convert_array: planning, the writer lock, staging, resume and commit.
//
// Progress of a run lives in "<work store>/.i2z-progress/": plan.json (a fingerprint of the
// inputs and options) and records/<shard>.json, written after each shard is committed. Shards
// are committed in order, so the completed work is always a prefix of the shards; resume skips
// that prefix and hands its saved records to the caller shard by shard, before the new ones.
// No records outlive their shard's hand-over: the side-car is streamed by the caller.
#include <algorithm>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string_view>

#include "formats/format.hpp"
#include "i2z/convert.hpp"
#include "i2z/error.hpp"
#include "i2z/reader.hpp"
#include "i2z/s3.hpp"
#include "pipeline/engine.hpp"
#include "pipeline/commit.hpp"
#include "pipeline/geometry.hpp"
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
constexpr const char* kArrayName = "images";  // kArrayPrefix without the slash
constexpr const char* kProgress = ".i2z-progress/";

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
  std::vector<Probed> probed;  // files
};

std::string size_text(std::uint64_t h, std::uint64_t w) { return std::to_string(h) + "x" + std::to_string(w); }

std::string records_key(std::uint64_t shard) {
  return std::string(kProgress) + "records/" + std::to_string(shard) + ".json";
}

json fits_json(const std::vector<FitsSelector>& sel) {
  json fe = json::array();
  for (const auto& s : sel) std::visit([&](const auto& v) { fe.push_back(v); }, s);
  return fe;
}

// What a shard writer needs, in one JSON document (the ConversionPlan::json).
struct PlanDoc {
  std::string work;  // the store (or staging folder) the shards go to
  std::map<std::string, std::string> storage_options;
  ArrayMeta meta;    // the array after the run
  std::uint64_t n_old = 0;
  FormatOptions fo;
  ConvertOptions decode;  // resize, interpolation_order, pad
  std::string fingerprint;
  std::string sidecar_staging, run_id;  // where and under which id side-car parts are written
};

json plan_to_json(const PlanDoc& p) {
  return {{"work", p.work},
          {"storage_options", p.storage_options},
          {"array", array_meta_to_json(p.meta)},
          {"n_old", p.n_old},
          {"fits_extension", fits_json(p.fo.fits_extension)},
          {"max_pixels", p.fo.max_pixels},
          {"max_memory", p.decode.max_memory},
          {"resize", p.decode.resize ? json{p.decode.resize->first, p.decode.resize->second} : json(nullptr)},
          {"order", p.decode.interpolation_order},
          {"pad", p.decode.pad},
          {"fingerprint", p.fingerprint},
          {"sidecar_staging", p.sidecar_staging},
          {"run_id", p.run_id}};
}

PlanDoc plan_from_json(const std::string& text) {
  PlanDoc p;
  try {
    const json j = json::parse(text);
    p.work = j.at("work");
    p.storage_options = j.at("storage_options").get<std::map<std::string, std::string>>();
    p.meta = parse_array_meta(j.at("array").dump(), "plan");
    p.n_old = j.at("n_old");
    for (const auto& e : j.at("fits_extension")) {
      if (e.is_number_integer()) p.fo.fits_extension.emplace_back(e.get<int>());
      else p.fo.fits_extension.emplace_back(e.get<std::string>());
    }
    p.fo.max_pixels = j.at("max_pixels");
    p.decode.max_memory = j.at("max_memory");
    if (!j.at("resize").is_null()) p.decode.resize = std::make_pair(j["resize"][0].get<std::uint64_t>(), j["resize"][1].get<std::uint64_t>());
    p.decode.interpolation_order = j.at("order");
    p.decode.pad = j.at("pad");
    p.fingerprint = j.at("fingerprint");
    p.sidecar_staging = j.value("sidecar_staging", "");
    p.run_id = j.value("run_id", "");
  } catch (const json::exception& e) {
    fail(ErrorKind::Value, std::string("invalid conversion plan: ") + e.what());
  }
  return p;
}

// What one worker may spend decoding an image: its share of max_memory less its chunk-row
// buffers, which it always holds. A budget the rows alone exceed is a run error.
std::uint64_t decode_budget(const ArrayMeta& meta, std::uint64_t max_memory, unsigned workers) {
  const ArrayGeometry g(meta);
  const std::uint64_t budget = worker_memory_budget(max_memory, workers);
  const std::uint64_t rows = g.row_bytes() + g.tile_bytes();
  if (rows >= budget)
    fail(ErrorKind::Value, "each of the " + std::to_string(std::max(1u, workers)) + " workers needs " +
                               mib_text(rows) + " for one chunk row of " + std::to_string(g.n) + " image(s) of " +
                               std::to_string(g.C) + "x" + std::to_string(g.H) + "x" + std::to_string(g.W) +
                               ", over its memory budget of " + mib_text(budget) +
                               " (max_memory / num_parallel_workers); use fewer workers, a smaller "
                               "chunk_shape[0] or image size, or a larger max_memory");
  return budget - rows;
}

// Writes shards [a, b) of the plan. `source` yields image `first_new` as its image 0 (new images
// only). Each committed shard's records are saved for resume, then handed to `records` on the
// calling thread (with the progress calls), in shard order.
void write_range(const PlanDoc& plan, Store& work, std::unique_ptr<ImageSource> source, std::uint64_t a,
                 std::uint64_t b, unsigned workers, const ProgressFn& progress, const RecordsFn& records) {
  const ArrayMeta& meta = plan.meta;
  const std::uint64_t N = meta.shape[0], S = meta.chunk_grid[0], n = meta.inner_chunk[0], n_old = plan.n_old;
  const std::uint64_t first_new = std::max(a * S, n_old), end_img = std::min(b * S, N);
  if (a >= b || first_new >= end_img) return;
  const std::uint64_t image_bytes = ArrayGeometry(meta).image_bytes();
  EngineJob job;
  job.store = &work;
  job.array_prefix = kArrayPrefix;
  job.meta = &meta;
  job.first_shard = a;
  job.end_shard = b;
  job.carry_rows = a == n_old / S ? (n_old % S) / n : 0;
  job.workers = workers;
  std::shared_ptr<const ArrayReader> old;
  if (n_old % n != 0 && a == n_old / S) old = open_image_array(std::shared_ptr<Store>(&work, [](Store*) {}));
  auto wrapped = make_append_source(first_new, std::move(source), old, image_bytes);
  job.source = wrapped.get();
  std::mutex mu;
  std::deque<std::pair<std::uint64_t, std::vector<ImageRecord>>> committed;  // not yet handed over
  job.on_shard_done = [&](std::uint64_t s, std::uint64_t first, std::vector<ImageRecord>&& recs) {
    // Old images re-encoded with an append's partial chunk row have placeholder records.
    const std::uint64_t lo = std::max(s * S, n_old);
    recs.erase(recs.begin(), recs.begin() + static_cast<std::ptrdiff_t>(lo - first));
    work.set(records_key(s), text_bytes(records_to_json(recs)));
    std::lock_guard lk(mu);
    committed.emplace_back(lo, std::move(recs));
  };
  // The engine reports progress on the calling thread about every 100 ms and once after the last
  // shard: hand the committed shards over there, so the caller never sees a worker thread.
  auto relay = [&](const Progress& p) {
    for (;;) {
      std::pair<std::uint64_t, std::vector<ImageRecord>> item;
      {
        std::lock_guard lk(mu);
        if (committed.empty()) break;
        item = std::move(committed.front());
        committed.pop_front();
      }
      if (records) records(item.first, std::move(item.second));
    }
    if (progress) progress(p);
  };
  run_engine(job, relay);
}

class ConversionImpl final : public Conversion {
 public:
  ConversionImpl(const std::string& path, Input input, const ConvertOptions& o, WriteMode mode)
      : input_(std::move(input)), options_(o), mode_(mode), run_id_(new_run_id()) {
    fo_.fits_extension = o.fits_extension;
    fo_.max_pixels = o.max_pixels;
    fo_.memory_budget = worker_memory_budget(o.max_memory, o.num_workers);  // plan() subtracts the rows
    inputs_ = inputs_fingerprint();
    target_ = open_target(path, mode, o.resume, o.storage_options,
                          [this](const std::string& group) { return already_committed(group); });
    path_ = target_->paths().store;
    work_path_ = target_->work_path();
    work_ = std::shared_ptr<Store>(&target_->work(), [](Store*) {});
  }
  ~ConversionImpl() override {
    if (!committed_) abort();
  }

  ConvertResult run(const ProgressFn& progress, const RecordsFn& records) override {
    const SinkScope scope(&sink_);
    const ConversionPlan& p = plan();
    ConvertResult res;
    auto deliver = [&](std::uint64_t first, std::vector<ImageRecord>&& recs) {
      for (const auto& r : recs) res.failed += !r.error.empty();
      if (records) records(first, std::move(recs));
    };
    for (std::uint64_t s = p.start_index / p.shard_images; s < p.first_shard; ++s)
      deliver(std::max(s * p.shard_images, p.start_index), saved_records(s));
    std::unique_ptr<ImageSource> source;
    // Clamped: a resume of a run whose shards were all written has nothing new (first_shard == end_shard).
    const std::uint64_t first_new =
        std::min(std::max(p.first_shard * p.shard_images, p.start_index), p.total_images);
    const std::uint64_t skip = first_new - p.start_index;  // new images in shards a resume skips
    if (input_.array) {
      ArrayInput rest = *input_.array;
      rest.data = static_cast<const std::uint8_t*>(rest.data) + skip * rest.c * rest.h * rest.w * dtype_size(rest.dtype);
      rest.n -= std::min(rest.n, skip);
      source = make_array_source(rest, doc_.meta.dtype);
    } else {
      source = make_file_source(std::span<const std::string>(input_.files).subspan(skip),
                                std::span<const Probed>(add_.probed).subspan(skip), fo_,
                                static_cast<std::uint32_t>(doc_.meta.shape[1]), doc_.meta.shape[2],
                                doc_.meta.shape[3], doc_.meta.dtype, options_);
    }
    write_range(doc_, *work_, std::move(source), p.first_shard, p.end_shard, options_.num_workers, progress,
                deliver);
    res.shape = doc_.meta.shape;
    res.dtype = doc_.meta.dtype;
    res.start_index = p.start_index;
    res.warnings = p.warnings;
    finish();
    return res;
  }

  std::vector<ImageRecord> saved_records(std::uint64_t shard) override {
    const std::uint64_t S = plan_.shard_images;
    if (!planned_ || shard < plan_.start_index / S || shard >= plan_.first_shard)
      fail(ErrorKind::Value, "shard " + std::to_string(shard) + " was not finished by an earlier run");
    const auto text = get_text(*work_, records_key(shard));
    auto recs = records_from_json(text.value_or("["));
    const std::uint64_t lo = std::max(shard * S, plan_.start_index), hi = std::min((shard + 1) * S, plan_.total_images);
    if (recs.size() != hi - lo)
      fail(ErrorKind::Corrupt, "saved progress records of shard " + std::to_string(shard) + " are incomplete");
    return recs;
  }

  const ConversionPlan& plan(const std::vector<std::string>& probes_json = {}) override {
    if (planned_) return plan_;
    if (target_->unchanged()) return plan_unchanged();
    const SinkScope scope(&sink_);
    work_->remove_incomplete();  // we hold the lock: any partial object is a dead writer's
    add_ = plan_inputs(probes_json);
    ArrayMeta meta;
    if (mode_ == WriteMode::Append) {
      const auto text = get_text(*work_, std::string(kArrayPrefix) + "zarr.json");
      meta = parse_array_meta(text.value_or(""), path_ + "/images/zarr.json");
      // Refused before anything is written: another tool's layout would get shards it cannot read.
      if (const std::string why = engine_layout_problem(meta); !why.empty())
        fail(ErrorKind::Value, "cannot append to '" + path_ + "': " + why);
      doc_.n_old = meta.shape[0];
      check_append_shape(meta, add_);
      if (options_.dtype && *options_.dtype != meta.dtype)
        plan_.warnings.push_back("dtype=" + std::string(dtype_name(*options_.dtype)) + " ignored: the store is " +
                                 std::string(dtype_name(meta.dtype)));
      else if (add_.dtype != meta.dtype)
        plan_.warnings.push_back("appending " + std::string(dtype_name(add_.dtype)) + " images to a " +
                                 std::string(dtype_name(meta.dtype)) + " store: values are converted (rounded and clipped)");
      meta.shape[0] = doc_.n_old + add_.count;
      target_->before_write(doc_.n_old);
      group_attrs_ = json::parse(get_text(*work_, "zarr.json").value_or("{}"), nullptr, false);
      group_attrs_ = group_attrs_.is_object() ? group_attrs_.value("attributes", json::object()) : json::object();
    } else {
      meta = plan_array(add_.count, add_.C, add_.H, add_.W, options_.dtype.value_or(add_.dtype), options_);
      json extra = json::parse(options_.extra_attributes_json, nullptr, false);
      if (extra.is_discarded()) fail(ErrorKind::Value, "invalid extra attributes JSON");
      group_attrs_ = group_attributes(meta, options_, extra);
    }
    fo_.memory_budget = decode_budget(meta, options_.max_memory, options_.num_workers);
    doc_.work = work_path_;
    doc_.storage_options = options_.storage_options;
    doc_.meta = meta;
    doc_.fo = fo_;
    doc_.decode = options_;
    doc_.fingerprint = plan_fingerprint(meta, doc_.n_old, add_).dump();
    doc_.sidecar_staging = target_->sidecar_staging();
    doc_.run_id = run_id_;
    const std::uint64_t N = meta.shape[0], S = meta.chunk_grid[0];
    plan_.shard_images = S;
    plan_.start_index = doc_.n_old;
    plan_.total_images = N;
    plan_.first_shard = doc_.n_old / S;
    plan_.end_shard = (N + S - 1) / S;

    // Resume: skip the prefix of shards whose object and records both exist.
    const std::string plan_key = std::string(kProgress) + "plan.json";
    if (options_.resume) {
      const auto saved = get_text(*work_, plan_key);
      if (saved && *saved != doc_.fingerprint)
        fail(ErrorKind::Value, "cannot resume '" + path_ + "': the inputs or options differ from the interrupted run");
      while (saved && plan_.first_shard < plan_.end_shard) {
        if (!work_->exists(records_key(plan_.first_shard)) ||
            !work_->exists(chunk_key(kArrayPrefix, {plan_.first_shard, 0, 0, 0})))
          break;
        ++plan_.first_shard;
      }
    } else {
      for (const auto& k : work_->list(kProgress)) work_->erase(k);
    }
    work_->set(plan_key, text_bytes(doc_.fingerprint));
    plan_.json = plan_to_json(doc_).dump();
    plan_.sidecar_staging = doc_.sidecar_staging;
    plan_.sidecar = target_->paths().sidecar;
    plan_.run_id = run_id_;
    // The probes' warnings (unreadable files) are planning warnings of this conversion.
    for (auto& w : sink_.take()) plan_.warnings.push_back(std::move(w));
    planned_ = true;
    return plan_;
  }

  void finish() override {
    if (finished_) return;
    if (!planned_) fail(ErrorKind::Value, "finish() before plan()");
    // Shard parts left by distributed workers that died (not the side-car part being written).
    open_store_url(work_path_ + "/images", options_.storage_options)->remove_incomplete();
    const std::uint64_t N = doc_.meta.shape[0];
    group_attrs_["total_images"] = N;
    group_attrs_["run_id"] = run_id_;
    if (!group_attrs_.contains("runs") || !group_attrs_["runs"].is_array()) group_attrs_["runs"] = json::array();
    group_attrs_["runs"].push_back(
        {{"run_id", run_id_}, {"start_index", doc_.n_old}, {"end_index", N}, {"inputs", inputs_}});
    if (mode_ == WriteMode::Append) {
      if (!group_attrs_.contains("append_history") || !group_attrs_["append_history"].is_array())
        group_attrs_["append_history"] = json::array();
      group_attrs_["append_history"].push_back(
          {{"appended_count", N - doc_.n_old}, {"start_index", doc_.n_old}, {"end_index", N}});
    }
    const json array = array_meta_to_json(doc_.meta);
    array_json_ = dump_json(array);
    group_json_ = dump_json(group_json(group_attrs_, {{kArrayName, array}}));
    if (mode_ != WriteMode::Append && !target_->paths().remote) {  // staged: invisible until the rename
      work_->set(std::string(kArrayPrefix) + "zarr.json", text_bytes(array_json_));
      work_->set("zarr.json", text_bytes(group_json_));
    }
    finished_ = true;
  }

  void commit() override {
    if (committed_) return;
    if (target_->unchanged()) {
      target_->close_unchanged();
      committed_ = true;
      return;
    }
    if (!finished_) fail(ErrorKind::Value, "commit() before finish()");
    target_->commit(array_json_, group_json_);
    committed_ = true;
  }

  // Keeps the staged work (resume can continue it); only the lock is released.
  void abort() override { target_->release(); }

 private:
  static std::string new_run_id() {
    std::random_device rd;
    char buf[33];
    for (int i = 0; i < 4; ++i) std::snprintf(buf + 8 * i, 9, "%08x", static_cast<unsigned>(rd()));
    return std::string(buf, 32);
  }

  // A resume whose inputs and options are those of the store's last committed run has nothing
  // to do (README: "Appending and resuming").
  bool already_committed(const std::string& group_text) const {
    const json g = json::parse(group_text, nullptr, false);
    if (!g.is_object() || !g.contains("attributes")) return false;
    const json& runs = g["attributes"].value("runs", json::array());
    return runs.is_array() && !runs.empty() && runs.back().is_object() && runs.back().value("inputs", "") == inputs_;
  }

  const ConversionPlan& plan_unchanged() {
    const json g = json::parse(target_->committed_group_json(), nullptr, false);
    const json& run = g["attributes"]["runs"].back();
    plan_.committed = true;
    plan_.run_id = run.value("run_id", "");
    plan_.start_index = run.value("start_index", std::uint64_t{0});
    plan_.total_images = run.value("end_index", std::uint64_t{0});
    plan_.sidecar = target_->paths().sidecar;
    planned_ = true;
    return plan_;
  }

  // The array's bytes, hashed whole up to 64 MiB; above that 4 KiB of every MiB (and the last
  // 4 KiB), so that fingerprinting stays far cheaper than converting.
  static std::uint64_t array_digest(const ArrayInput& a) {
    const auto* p = static_cast<const char*>(a.data);
    const std::size_t n = a.n * a.c * a.h * a.w * dtype_size(a.dtype);
    std::uint64_t h = 1469598103934665603ull;
    auto mix = [&](std::size_t off, std::size_t len) {
      h = (h ^ std::hash<std::string_view>{}(std::string_view(p + off, len))) * 1099511628211ull;
    };
    constexpr std::size_t kWhole = std::size_t{64} << 20, kStride = std::size_t{1} << 20, kSample = 4096;
    if (n <= kWhole) {
      mix(0, n);
    } else {
      for (std::size_t off = 0; off < n; off += kStride) mix(off, std::min(kSample, n - off));
      mix(n - kSample, kSample);
    }
    return h;
  }

  // What a resume compares with the last committed run: the input paths (or the array's shape),
  // their count and the options that shape the pixels.
  std::string inputs_fingerprint() const {
    std::uint64_t h = 1469598103934665603ull;
    for (const auto& f : input_.files) {
      for (unsigned char c : f) h = (h ^ c) * 1099511628211ull;
      h = (h ^ 0xff) * 1099511628211ull;
    }
    json j{{"files", std::to_string(h)},
           {"count", input_.array ? input_.array->n : input_.files.size()},
           {"resize", options_.resize ? json{options_.resize->first, options_.resize->second} : json(nullptr)},
           {"order", options_.interpolation_order},
           {"pad", options_.pad},
           {"fits_extension", fits_json(options_.fits_extension)},
           {"max_pixels", options_.max_pixels},
           {"dtype", options_.dtype ? dtype_name(*options_.dtype) : ""}};
    if (input_.array) {
      const ArrayInput& a = *input_.array;
      j["array"] = {a.c, a.h, a.w, dtype_name(a.dtype), std::to_string(array_digest(a))};
    }
    std::uint64_t d = 1469598103934665603ull;
    for (unsigned char c : j.dump()) d = (d ^ c) * 1099511628211ull;
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(d));
    return buf;
  }

  NewImages plan_inputs(const std::vector<std::string>& probes_json) {
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
    if (probes_json.empty()) {
      probe_files(input_.files, fo_, options_.num_workers, a.probed);
    } else {
      for (const auto& part : probes_json) probes_from_json(part, input_.files, a.probed);
      if (a.probed.size() != a.count) fail(ErrorKind::Value, "probe results do not match the input files");
      for (std::uint64_t i = 0; i < a.count; ++i)  // the probe tasks kept their warnings to themselves
        if (!a.probed[i].ok) log_warning("failed to read '" + input_.files[i] + "': " + a.probed[i].error());
    }
    reject_outliers(a.probed);
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
                                 input_.files[0] + ": " + a.probed[0].error());
    if (options_.resize) {
      a.H = options_.resize->first;
      a.W = options_.resize->second;
    }
    if (options_.resize || options_.pad) {
      try {
        check_pixel_limit(a.H, a.W, a.C, options_.max_pixels);
      } catch (const Error& e) {
        fail(ErrorKind::Value, std::string(options_.resize ? "resize target: " : "padded canvas: ") + e.what());
      }
    }
    warn_single_setter(a);
    a.dtype = *dtype;
    return a;
  }

  // One header must not set the store's shape for all the others (README: "Bad input"): a file
  // whose channel count (or, with pad, pixel count) is far beyond the run's median is a
  // per-image error. max_channels replaces the automatic channel rule.
  void reject_outliers(std::vector<Probed>& probed) const {
    std::vector<std::uint32_t> cs;
    std::vector<std::uint64_t> areas;
    for (const auto& p : probed)
      if (p.ok) {
        cs.push_back(p.channels);
        areas.push_back(p.height * p.width);  // each < max_pixels: no overflow
      }
    if (cs.empty()) return;
    auto lower_median = [](auto& v) {
      auto mid = v.begin() + static_cast<std::ptrdiff_t>((v.size() - 1) / 2);
      std::nth_element(v.begin(), mid, v.end());
      return *mid;
    };
    const std::uint64_t med_c = lower_median(cs), med_area = lower_median(areas);
    const std::uint64_t max_c = options_.max_channels ? options_.max_channels : std::max<std::uint64_t>(16, 16 * med_c);
    const std::uint64_t max_area = std::max<std::uint64_t>(std::uint64_t{1} << 24, 64 * med_area);
    for (std::size_t i = 0; i < probed.size(); ++i) {
      Probed& p = probed[i];
      if (!p.ok) continue;
      if (p.channels > max_c)
        p.set_error(options_.max_channels
                        ? std::to_string(p.channels) + " channels is above max_channels=" + std::to_string(max_c)
                        : std::to_string(p.channels) + " channels is far beyond the other images (median " +
                              std::to_string(med_c) + "); pass max_channels to accept it");
      else if (options_.pad && p.height * p.width > max_area)
        p.set_error("image of " + size_text(p.height, p.width) + " is far beyond the other images (median " +
                    std::to_string(med_area) + " pixels): it would set the padded canvas of every image");
      if (p.error().empty()) continue;
      p.ok = false;
      log_warning("failed to read '" + input_.files[i] + "': " + p.error());
    }
  }

  // A loud warning when the store's C (or padded H, W) comes from one file alone.
  void warn_single_setter(const NewImages& a) {
    struct Dim {
      const char* name;
      std::uint64_t value;
      std::uint64_t (*of)(const Probed&);
    };
    std::vector<Dim> dims{{"channel count C", a.C, [](const Probed& p) -> std::uint64_t { return p.channels; }}};
    if (options_.pad) {
      dims.push_back({"padded height H", a.H, [](const Probed& p) { return p.height; }});
      dims.push_back({"padded width W", a.W, [](const Probed& p) { return p.width; }});
    }
    for (const auto& d : dims) {
      std::uint64_t at_max = 0, ok = 0, second = 0, who = 0;
      for (std::uint64_t i = 0; i < a.probed.size(); ++i) {
        const Probed& p = a.probed[i];
        if (!p.ok) continue;
        ++ok;
        const std::uint64_t v = d.of(p);
        if (v == d.value) {
          ++at_max;
          who = i;
        } else {
          second = std::max(second, v);
        }
      }
      if (ok > 1 && at_max == 1)
        plan_.warnings.push_back("the store's " + std::string(d.name) + " = " + std::to_string(d.value) +
                                 " is set by one file alone: '" + input_.files[who] + "' (the other " +
                                 std::to_string(ok - 1) + " images have at most " + std::to_string(second) + ")");
    }
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
    return {{"engine", version()},
            {"n_old", n_old},
            {"count", add.count},
            {"array", array_meta_to_json(meta)},
            {"files", std::to_string(h)},
            {"memory", input_.array.has_value()},
            {"resize", options_.resize ? json{options_.resize->first, options_.resize->second} : json(nullptr)},
            {"order", options_.interpolation_order},
            {"pad", options_.pad},
            {"fits_extension", fits_json(options_.fits_extension)},
            {"max_pixels", fo_.max_pixels}};
  }

  std::string path_, work_path_;
  Input input_;
  ConvertOptions options_;
  WriteMode mode_;
  std::string run_id_, inputs_;
  std::unique_ptr<Target> target_;
  WarningSink sink_;  // this conversion's warnings (pipeline/log.hpp)
  FormatOptions fo_;
  std::shared_ptr<Store> work_;
  NewImages add_;
  PlanDoc doc_;
  ConversionPlan plan_;
  json group_attrs_;
  std::string array_json_, group_json_;
  bool planned_ = false, finished_ = false, committed_ = false;
};

void validate_options(const ConvertOptions& o) {
  if (o.interpolation_order < 0 || o.interpolation_order > 5)
    fail(ErrorKind::Value, "interpolation_order must be between 0 and 5, got " + std::to_string(o.interpolation_order));
  if (o.resize && (o.resize->first == 0 || o.resize->second == 0))
    fail(ErrorKind::Value, "resize must be two positive integers (height, width)");
  if (o.resize && o.pad) fail(ErrorKind::Value, "resize and pad cannot be combined");
}

}  // namespace

std::string probe_files_json(const std::vector<std::string>& files, const ConvertOptions& options) {
  FormatOptions fo;
  fo.fits_extension = options.fits_extension;
  fo.max_pixels = options.max_pixels;
  std::vector<Probed> probed;
  WarningSink sink;  // dropped: plan() reports the failed probes of the JSON it is given
  const SinkScope scope(&sink);
  probe_files(files, fo, options.num_workers, probed);
  return probes_to_json(files, probed);
}

void write_shards(const std::string& plan_json, const std::vector<std::string>& files, std::uint64_t first_shard,
                  std::uint64_t end_shard, unsigned workers, const ProgressFn& progress, const RecordsFn& records) {
  const PlanDoc plan = plan_from_json(plan_json);
  auto work = open_store_url(plan.work, plan.storage_options);
  const auto saved = get_text(*work, std::string(kProgress) + "plan.json");
  if (!saved || *saved != plan.fingerprint)
    fail(ErrorKind::Value, "the conversion plan does not match the store at '" + plan.work + "'");
  const std::uint64_t N = plan.meta.shape[0], S = plan.meta.chunk_grid[0];
  const std::uint64_t first_new = std::max(first_shard * S, plan.n_old), end_img = std::min(end_shard * S, N);
  if (end_img > first_new && files.size() != end_img - first_new)
    fail(ErrorKind::Value, "write_shards: expected " + std::to_string(end_img - first_new) + " files for shards [" +
                               std::to_string(first_shard) + ", " + std::to_string(end_shard) + "), got " +
                               std::to_string(files.size()));
  std::vector<Probed> probed;
  FormatOptions fo = plan.fo;  // this machine's budget
  fo.memory_budget = decode_budget(plan.meta, plan.decode.max_memory, workers);
  probe_files(files, fo, workers, probed);
  auto source = make_file_source(files, probed, fo, static_cast<std::uint32_t>(plan.meta.shape[1]),
                                 plan.meta.shape[2], plan.meta.shape[3], plan.meta.dtype, plan.decode);
  write_range(plan, *work, std::move(source), first_shard, end_shard, workers, progress, records);
}

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
