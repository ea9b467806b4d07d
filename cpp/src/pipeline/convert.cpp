// convert_files / convert_array: planning, the two image sources, staging and commit.
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <set>
#include <thread>

#include "formats/format.hpp"
#include "i2z/convert.hpp"
#include "i2z/error.hpp"
#include "image/pixels.hpp"
#include "image/resize.hpp"
#include "pipeline/engine.hpp"
#include "pipeline/log.hpp"
#include "pipeline/plan.hpp"

#ifndef I2Z_VERSION
#define I2Z_VERSION "0.0.0"
#endif

namespace i2z {
namespace fs = std::filesystem;

const char* version() { return I2Z_VERSION; }

namespace {

constexpr const char* kArrayPrefix = "images/";

void set_stats(ImageRecord& r, const void* data, DType t, std::uint64_t n) {
  const Stats s = compute_stats(data, t, n);
  r.min_value = s.min;
  r.max_value = s.max;
  r.mean_value = s.mean;
}

// ---- sources -------------------------------------------------------------------------

class ArraySource final : public ImageSource {
 public:
  ArraySource(const ArrayInput& in, DType dst) : in_(in), dst_(dst) {}
  const std::uint8_t* fill(std::uint64_t first, std::uint64_t count, std::uint8_t* scratch,
                           ImageRecord* records) override {
    const std::uint64_t per = in_.c * in_.h * in_.w;
    const auto* src = static_cast<const std::uint8_t*>(in_.data) + first * per * dtype_size(in_.dtype);
    const std::uint8_t* out = src;
    if (in_.dtype != dst_) {
      cast_values(src, in_.dtype, scratch, dst_, count * per);
      out = scratch;
    }
    for (std::uint64_t i = 0; i < count; ++i) {
      ImageRecord& r = records[i];
      r.dtype = std::string(dtype_name(in_.dtype));
      r.shape = {in_.c, in_.h, in_.w};
      set_stats(r, out + i * per * dtype_size(dst_), dst_, per);
    }
    return out;
  }

 private:
  ArrayInput in_;
  DType dst_;
};

struct Probed {
  const Format* format = nullptr;
  std::uint64_t height = 0, width = 0;
  std::uint32_t channels = 0;
  DType dtype = DType::u8;
  bool ok = false;
};

class FileSource final : public ImageSource {
 public:
  FileSource(const std::vector<std::string>& files, const std::vector<Probed>& probed, const FormatOptions& fo,
             const ArrayMeta& meta, const ConvertOptions& o)
      : files_(files), probed_(probed), fo_(fo), C_(static_cast<std::uint32_t>(meta.shape[1])),
        H_(meta.shape[2]), W_(meta.shape[3]), dtype_(meta.dtype), resize_(o.resize.has_value()),
        order_(o.interpolation_order) {}

  const std::uint8_t* fill(std::uint64_t first, std::uint64_t count, std::uint8_t* scratch,
                           ImageRecord* records) override {
    thread_local std::vector<std::uint8_t> decoded, resized;
    const std::uint64_t per = C_ * H_ * W_;
    const std::uint64_t bytes = per * dtype_size(dtype_);
    for (std::uint64_t i = 0; i < count; ++i) {
      std::uint8_t* slot = scratch + i * bytes;
      ImageRecord& r = records[i];
      const Probed& p = probed_[first + i];
      if (!p.ok) {  // the probe already recorded the reason
        std::memset(slot, 0, bytes);
        continue;
      }
      const std::string& path = files_[first + i];
      try {
        // Probe again: cheap next to the decode, and catches a file changed since planning.
        ImageInfo info = p.format->probe(path, fo_);
        if (info.height != p.height || info.width != p.width || info.channels != p.channels || info.dtype != p.dtype)
          fail(ErrorKind::Corrupt, "file changed while converting");
        r.fits_extension = info.fits_extension;
        r.fits_header_json = std::move(info.fits_header_json);
        if (decoded.size() < info.byte_size()) decoded.resize(info.byte_size());
        p.format->decode(path, fo_, info, decoded.data());
        SrcImage src{decoded.data(), info.dtype, info.channels, info.height, info.width,
                     info.layout == PixelLayout::CHW};
        if (resize_ && (info.height != H_ || info.width != W_)) {
          DType rt;
          resize_image(src, H_, W_, order_, resized, rt);
          src = SrcImage{resized.data(), rt, info.channels, H_, W_, true};
        }
        normalise_into(src, slot, dtype_, C_, H_, W_);
        set_stats(r, slot, dtype_, per);
      } catch (const std::exception& e) {
        std::memset(slot, 0, bytes);
        r.error = e.what();
        log_warning("failed to read '" + path + "': " + r.error);
      }
    }
    return scratch;
  }

 private:
  const std::vector<std::string>& files_;
  const std::vector<Probed>& probed_;
  FormatOptions fo_;
  std::uint32_t C_;
  std::uint64_t H_, W_;
  DType dtype_;
  bool resize_;
  int order_;
};

// ---- staging and commit --------------------------------------------------------------

bool is_zarr_store(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec) && fs::exists(p / "zarr.json", ec);
}

void check_target(const std::string& path, bool overwrite) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  if (!overwrite)
    fail(ErrorKind::FileExists, "store '" + path + "' already exists; pass overwrite=True to replace it or append=True to add to it");
  if (!is_zarr_store(path))
    fail(ErrorKind::Value, "refusing to overwrite '" + path + "': it is not a Zarr store");
}

std::string describe_error(const std::exception& e) { return e.what(); }

class StagedConversion : public Conversion {
 public:
  StagedConversion(std::string path, ConvertOptions options, bool overwrite)
      : path_(std::move(path)), staging_(path_ + ".i2z-tmp"), options_(std::move(options)), overwrite_(overwrite) {
    while (path_.size() > 1 && path_.back() == '/') path_.pop_back();
    staging_ = path_ + ".i2z-tmp";
    check_target(path_, overwrite_);
    std::error_code ec;
    fs::remove_all(staging_, ec);
    store_ = open_local_store(staging_);
  }
  ~StagedConversion() override {
    if (!committed_) abort();
  }

  void commit() override {
    if (committed_) return;
    std::error_code ec;
    const std::string old = path_ + ".i2z-old";
    if (fs::exists(path_, ec)) {
      check_target(path_, overwrite_);
      fs::remove_all(old, ec);
      fs::rename(path_, old, ec);
      if (ec) fail(ErrorKind::IO, "cannot move the old store '" + path_ + "' aside: " + ec.message());
    }
    fs::rename(staging_, path_, ec);
    if (ec) fail(ErrorKind::IO, "cannot rename '" + staging_ + "' to '" + path_ + "': " + ec.message());
    committed_ = true;
    fs::remove_all(old, ec);
  }
  void abort() override {
    std::error_code ec;
    if (!committed_) fs::remove_all(staging_, ec);
  }

 protected:
  ConvertResult write(std::uint64_t N, std::uint32_t C, std::uint64_t H, std::uint64_t W, DType dtype,
                      ImageSource& source, std::vector<ImageRecord> records, const ProgressFn& progress) {
    const ArrayMeta meta = plan_array(N, C, H, W, dtype, options_);
    nlohmann::json extra;
    try {
      extra = nlohmann::json::parse(options_.extra_attributes_json);
    } catch (const nlohmann::json::exception& e) {
      fail(ErrorKind::Value, std::string("invalid extra attributes JSON: ") + e.what());
    }
    EngineJob job;
    job.store = store_.get();
    job.array_prefix = kArrayPrefix;
    job.meta = &meta;
    job.source = &source;
    job.first_shard = 0;
    job.end_shard = (N + meta.chunk_grid[0] - 1) / meta.chunk_grid[0];
    job.workers = options_.num_workers;
    records.resize(N);
    run_engine(job, records, progress);
    ArrayMeta written = meta;
    const std::string arr = dump_json(array_meta_to_json(written));
    store_->set("images/zarr.json", {reinterpret_cast<const std::uint8_t*>(arr.data()), arr.size()});
    const std::string grp = dump_json(group_json(group_attributes(meta, options_, extra)));
    store_->set("zarr.json", {reinterpret_cast<const std::uint8_t*>(grp.data()), grp.size()});
    ConvertResult res;
    res.shape = meta.shape;
    res.dtype = dtype;
    for (const auto& r : records) res.failed += !r.error.empty();
    res.records = std::move(records);
    return res;
  }

  std::string path_, staging_;
  ConvertOptions options_;
  bool overwrite_;
  bool committed_ = false;
  std::shared_ptr<Store> store_;
};

class ArrayConversion final : public StagedConversion {
 public:
  ArrayConversion(const std::string& path, const ArrayInput& in, const ConvertOptions& o, bool overwrite)
      : StagedConversion(path, o, overwrite), in_(in) {}
  ConvertResult run(const ProgressFn& progress) override {
    const DType dst = options_.dtype.value_or(in_.dtype);
    ArraySource src(in_, dst);
    return write(in_.n, static_cast<std::uint32_t>(in_.c), in_.h, in_.w, dst, src, {}, progress);
  }

 private:
  ArrayInput in_;
};

class FileConversion final : public StagedConversion {
 public:
  FileConversion(const std::string& path, std::vector<std::string> files, const ConvertOptions& o, bool overwrite)
      : StagedConversion(path, o, overwrite), files_(std::move(files)) {
    fo_.fits_extension = o.fits_extension;
    fo_.max_pixels = o.max_pixels;
  }

  ConvertResult run(const ProgressFn& progress) override {
    const std::uint64_t N = files_.size();
    std::vector<Probed> probed(N);
    std::vector<ImageRecord> records(N);
    probe_all(probed, records);
    // Plan: size from the first readable file (or the largest with pad), C = max, dtype promoted.
    std::uint64_t H = 0, W = 0;
    std::uint32_t C = 0;
    std::optional<DType> dtype;
    std::uint64_t first_ok = N;
    for (std::uint64_t i = 0; i < N; ++i) {
      const Probed& p = probed[i];
      if (!p.ok) continue;
      if (first_ok == N) {
        first_ok = i;
        H = p.height;
        W = p.width;
      } else if (options_.pad) {
        H = std::max(H, p.height);
        W = std::max(W, p.width);
      } else if (!options_.resize && (p.height != H || p.width != W)) {
        fail(ErrorKind::Value, "image '" + files_[i] + "' is " + std::to_string(p.height) + "x" +
                                   std::to_string(p.width) + " but '" + files_[first_ok] + "' is " +
                                   std::to_string(H) + "x" + std::to_string(W) +
                                   "; all images must have the same size unless resize=(H, W) or pad=True is given");
      }
      C = std::max(C, p.channels);
      dtype = dtype ? dtype_promote(*dtype, p.dtype) : p.dtype;
    }
    if (first_ok == N)
      fail(ErrorKind::Value, "none of the " + std::to_string(N) + " images could be read; first error: " +
                                 (N ? files_[0] + ": " + records[0].error : std::string("no files")));
    if (options_.resize) {
      H = options_.resize->first;
      W = options_.resize->second;
    }
    const DType dst = options_.dtype.value_or(*dtype);
    FileSource src(files_, probed, fo_, plan_array(N, C, H, W, dst, options_), options_);
    return write(N, C, H, W, dst, src, std::move(records), progress);
  }

 private:
  void probe_all(std::vector<Probed>& probed, std::vector<ImageRecord>& records) {
    std::atomic<std::uint64_t> next{0};
    auto work = [&] {
      for (std::uint64_t i = next++; i < files_.size(); i = next++) {
        ImageRecord& r = records[i];
        Probed& p = probed[i];
        r.source_path = files_[i];
        struct stat st;
        if (::stat(files_[i].c_str(), &st) == 0) r.file_size_bytes = static_cast<std::uint64_t>(st.st_size);
        p.format = format_for_path(files_[i]);
        if (!p.format) {
          r.error = "unsupported file extension";
          continue;
        }
        r.format = std::string(p.format->name());
        try {
          ImageInfo info = p.format->probe(files_[i], fo_);
          r.dtype = std::string(dtype_name(info.dtype));
          r.shape = info.shape;
          r.fits_extension = info.fits_extension;
          p.height = info.height;
          p.width = info.width;
          p.channels = info.channels;
          p.dtype = info.dtype;
          p.ok = true;
        } catch (const std::exception& e) {
          r.error = e.what();
          log_warning("failed to read '" + files_[i] + "': " + r.error);
        }
      }
    };
    const unsigned n = std::max(1u, std::min<unsigned>(options_.num_workers, static_cast<unsigned>(files_.size())));
    std::vector<std::thread> threads;
    for (unsigned t = 1; t < n; ++t) threads.emplace_back(work);
    work();
    for (auto& t : threads) t.join();
  }

  std::vector<std::string> files_;
  FormatOptions fo_;
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
                                          const ConvertOptions& options, bool overwrite) {
  validate_options(options);
  if (files.empty()) fail(ErrorKind::Value, "no supported image files to convert");
  return std::make_unique<FileConversion>(store_path, std::move(files), options, overwrite);
}

std::unique_ptr<Conversion> convert_array(const std::string& store_path, const ArrayInput& input,
                                          const ConvertOptions& options, bool overwrite) {
  validate_options(options);
  if (input.c == 0 || input.h == 0 || input.w == 0)
    fail(ErrorKind::Value, "images must have non-zero channel, height and width dimensions");
  return std::make_unique<ArrayConversion>(store_path, input, options, overwrite);
}

// ---- discovery -----------------------------------------------------------------------

std::vector<std::string> discover_files(const std::vector<std::string>& folders, bool recursive,
                                        std::vector<std::string>* warnings) {
  std::vector<std::string> out;
  std::set<std::pair<dev_t, ino_t>> seen_dirs;  // symlink loops and repeated folders
  auto walk = [&](auto&& self, const fs::path& dir) -> void {
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0 || !seen_dirs.insert({st.st_dev, st.st_ino}).second) return;
    std::error_code ec;
    std::vector<fs::path> subdirs;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const fs::path& p = it->path();
      std::error_code e2;
      if (fs::is_directory(p, e2)) {
        if (recursive) subdirs.push_back(p);
      } else if (fs::is_regular_file(p, e2) && format_for_path(p.filename().string())) {
        out.push_back(p.string());
      }
    }
    if (ec && warnings) warnings->push_back("cannot list folder '" + dir.string() + "': " + ec.message());
    for (const auto& s : subdirs) self(self, s);
  };
  for (const auto& f : folders) {
    std::error_code ec;
    if (fs::is_directory(f, ec)) {
      walk(walk, fs::path(f));
    } else if (fs::is_regular_file(f, ec) && format_for_path(f)) {
      out.push_back(f);
    } else if (warnings) {
      warnings->push_back("folder '" + f + "' does not exist; skipped");
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace i2z
