#include "pipeline/sources.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <cstring>
#include <thread>

#include "i2z/error.hpp"
#include "image/pixels.hpp"
#include "image/resize.hpp"
#include "pipeline/geometry.hpp"
#include "pipeline/log.hpp"

namespace i2z {

namespace {

std::int64_t mtime_ns(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

void set_stats(ImageRecord& r, const void* data, DType t, std::uint64_t n) {
  const Stats s = compute_stats(data, t, n);
  r.min_value = s.min;
  r.max_value = s.max;
  r.mean_value = s.mean;
}

class ArraySource final : public ImageSource {
 public:
  ArraySource(const ArrayInput& in, DType dst) : in_(in), dst_(dst) {}
  const std::uint8_t* fill(std::uint64_t first, std::uint64_t count, std::uint8_t* scratch,
                           ImageRecord* records) override {
    const std::uint64_t per = in_.c * in_.h * in_.w;
    const auto* src = static_cast<const std::uint8_t*>(in_.data) + first * per * dtype_size(in_.dtype);
    const std::uint8_t* out = src;  // zero copy when the dtype is already the store's
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

class FileSource final : public ImageSource {
 public:
  FileSource(std::span<const std::string> files, std::span<const Probed> probed, const FormatOptions& fo,
             std::uint32_t C, std::uint64_t H, std::uint64_t W, DType dtype, const ConvertOptions& o)
      : files_(files), probed_(probed), fo_(fo), C_(C), H_(H), W_(W), dtype_(dtype), resize_(o.resize.has_value()),
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
      const std::string& path = files_[first + i];
      r.source_path = path;
      r.file_size_bytes = p.file_size;
      if (p.format) r.format = std::string(p.format->name());
      if (!p.ok) {  // the probe logged the reason
        std::memset(slot, 0, bytes);
        r.error = p.error();
        continue;
      }
      r.dtype = std::string(dtype_name(p.dtype));
      try {
        ImageInfo info;
        if (p.stamped) {
          // A file changed since planning is caught by its size and mtime; the decoder also
          // checks the header it reads against the probed geometry.
          struct stat st;
          if (::stat(path.c_str(), &st) != 0 || static_cast<std::uint64_t>(st.st_size) != p.file_size ||
              mtime_ns(st) != p.mtime_ns)
            fail(ErrorKind::Corrupt, "file changed while converting");
          info.height = p.height;
          info.width = p.width;
          info.channels = p.channels;
          info.dtype = p.dtype;
          info.layout = p.layout;
          info.shape = p.shape();  // the decoders check it against the header they read
          r.shape = info.shape;
          r.fits_extension = p.fits_extension;
        } else {
          // Probes from elsewhere (JSON) carry no stamp: probe again.
          info = p.format->probe(path, fo_);
          if (info.height != p.height || info.width != p.width || info.channels != p.channels ||
              info.dtype != p.dtype)
            fail(ErrorKind::Corrupt, "file changed while converting");
          r.shape = info.shape;
          r.fits_extension = info.fits_extension;
        }
        if (info.height == H_ && info.width == W_ && info.channels == C_ && info.dtype == dtype_ &&
            (info.layout == PixelLayout::CHW || C_ == 1)) {
          // Already the store's layout and dtype (FITS, gray PNG/TIFF): decode straight into the
          // row slot, sparing a copy of every pixel.
          p.format->decode_with_header(path, fo_, info, slot, r.fits_header_json);
          set_stats(r, slot, dtype_, per);
          continue;
        }
        // Decoded pixels and resize buffers within the worker's budget (README: "Bad input").
        const bool resizing = resize_ && (info.height != H_ || info.width != W_);
        std::uint64_t need = info.byte_size();
        if (resizing)  // per-plane float workspace (image, blur, prefilter, NaN copy) + output planes
          need += checked_mul(info.height, info.width, 32, 1, "resize workspace") +
                  checked_mul(info.channels, H_, W_, 8, "resize output");
        if (need > fo_.memory_budget)
          fail(ErrorKind::Value, "decoding needs " + mib_text(need) + " (" + std::to_string(info.height) + "x" +
                                     std::to_string(info.width) + "x" + std::to_string(info.channels) +
                                     (resizing ? ", resized" : "") + "), over the per-worker memory budget of " +
                                     mib_text(fo_.memory_budget) + " (max_memory / num_parallel_workers)");
        if (decoded.size() < info.byte_size()) decoded.resize(info.byte_size());
        p.format->decode_with_header(path, fo_, info, decoded.data(), r.fits_header_json);
        SrcImage src{decoded.data(), info.dtype, info.channels, info.height, info.width,
                     info.layout == PixelLayout::CHW};
        if (resizing) {
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
  std::span<const std::string> files_;
  std::span<const Probed> probed_;
  FormatOptions fo_;
  std::uint32_t C_;
  std::uint64_t H_, W_;
  DType dtype_;
  bool resize_;
  int order_;
};

class AppendSource final : public ImageSource {
 public:
  AppendSource(std::uint64_t offset, std::unique_ptr<ImageSource> inner, std::shared_ptr<const ArrayReader> old,
               std::uint64_t image_bytes)
      : offset_(offset), inner_(std::move(inner)), old_(std::move(old)), image_bytes_(image_bytes) {}
  const std::uint8_t* fill(std::uint64_t first, std::uint64_t count, std::uint8_t* scratch,
                           ImageRecord* records) override {
    if (first >= offset_) return inner_->fill(first - offset_, count, scratch, records);
    // The partial chunk row of an append: old images first (records are the caller's dummies).
    if (!old_) fail(ErrorKind::Value, "internal: images before the first new one requested without a reader");
    const std::uint64_t n_old = offset_ - first;
    old_->read_range(first, offset_, scratch);
    const std::uint64_t n_new = count - n_old;
    const std::uint8_t* tail = inner_->fill(0, n_new, scratch + n_old * image_bytes_, records + n_old);
    if (tail != scratch + n_old * image_bytes_) std::memmove(scratch + n_old * image_bytes_, tail, n_new * image_bytes_);
    return scratch;
  }

 private:
  std::uint64_t offset_;
  std::unique_ptr<ImageSource> inner_;
  std::shared_ptr<const ArrayReader> old_;
  std::uint64_t image_bytes_;
};

}  // namespace

Probed::Probed(const Probed& o)
    : format(o.format), height(o.height), width(o.width), file_size(o.file_size), mtime_ns(o.mtime_ns),
      channels(o.channels), dtype(o.dtype), layout(o.layout), ok(o.ok), stamped(o.stamped), shape_(o.shape_),
      fits_extension(o.fits_extension), rare_(o.rare_ ? std::make_unique<Rare>(*o.rare_) : nullptr) {}

Probed& Probed::operator=(const Probed& o) {
  if (this != &o) *this = Probed(o);
  return *this;
}

Probed::Rare& Probed::rare() {
  if (!rare_) rare_ = std::make_unique<Rare>();
  return *rare_;
}

const std::string& Probed::error() const {
  static const std::string none;
  return rare_ ? rare_->error : none;
}

void Probed::set_error(std::string error) {
  if (!error.empty() || rare_) rare().error = std::move(error);
}

std::vector<std::uint64_t> Probed::shape() const {
  switch (shape_) {
    case Shape::None: return {};
    case Shape::HW: return {height, width};
    case Shape::HWC: return {height, width, channels};
    case Shape::CHW: return {channels, height, width};
    case Shape::Rare: break;
  }
  return rare_->shape;
}

void Probed::set_shape(std::vector<std::uint64_t> s) {
  using V = std::vector<std::uint64_t>;
  shape_ = s.empty()                        ? Shape::None
           : s == V{height, width}           ? Shape::HW
           : s == V{height, width, channels} ? Shape::HWC
           : s == V{channels, height, width} ? Shape::CHW
                                             : Shape::Rare;
  if (shape_ == Shape::Rare) rare().shape = std::move(s);
}

static_assert(sizeof(Probed) <= 96, "Probed is held for every input file: keep it compact");

void probe_files(const std::vector<std::string>& files, const FormatOptions& fo, unsigned workers,
                 std::vector<Probed>& probed) {
  probed.assign(files.size(), Probed{});
  std::atomic<std::uint64_t> next{0};
  std::atomic<bool> stop{false};
  WarningSink* sink = current_sink();
  std::mutex mu;
  std::condition_variable cv;
  unsigned finished = 0;
  auto work = [&] {
    SinkScope scope(sink);
    for (std::uint64_t i = next++; i < files.size() && !stop; i = next++) {
      Probed& p = probed[i];
      struct stat st;
      if (::stat(files[i].c_str(), &st) == 0) {
        p.file_size = static_cast<std::uint64_t>(st.st_size);
        p.mtime_ns = mtime_ns(st);
        p.stamped = true;
      }
      p.format = format_for_path(files[i]);
      if (!p.format) {
        p.set_error("unsupported file extension");
        continue;
      }
      try {
        ImageInfo info = p.format->probe(files[i], fo);
        p.height = info.height;
        p.width = info.width;
        p.channels = info.channels;
        p.dtype = info.dtype;
        p.layout = info.layout;
        p.set_shape(std::move(info.shape));
        p.fits_extension = std::move(info.fits_extension);
        p.ok = true;
      } catch (const std::exception& e) {
        p.set_error(e.what());
        log_warning("failed to read '" + files[i] + "': " + p.error());
      }
    }
  };
  const unsigned n = std::max(1u, std::min<unsigned>(workers, static_cast<unsigned>(std::min<std::size_t>(files.size(), 64))));
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < n; ++t)
    threads.emplace_back([&] {
      work();
      std::lock_guard lk(mu);
      ++finished;
      cv.notify_all();
    });
  // The calling thread only watches for an interrupt (Ctrl-C), which stops the workers.
  std::exception_ptr error;
  try {
    std::unique_lock lk(mu);
    while (finished < n) {
      cv.wait_for(lk, std::chrono::milliseconds(100));
      lk.unlock();
      poll_interrupt();
      lk.lock();
    }
  } catch (...) {
    error = std::current_exception();
    stop = true;
  }
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);
}

std::unique_ptr<ImageSource> make_file_source(std::span<const std::string> files, std::span<const Probed> probed,
                                              const FormatOptions& fo,
                                              std::uint32_t C, std::uint64_t H, std::uint64_t W, DType dtype,
                                              const ConvertOptions& options) {
  return std::make_unique<FileSource>(files, probed, fo, C, H, W, dtype, options);
}

std::unique_ptr<ImageSource> make_array_source(const ArrayInput& input, DType dtype) {
  return std::make_unique<ArraySource>(input, dtype);
}

std::unique_ptr<ImageSource> make_append_source(std::uint64_t offset, std::unique_ptr<ImageSource> inner,
                                                std::shared_ptr<const ArrayReader> old, std::uint64_t image_bytes) {
  return std::make_unique<AppendSource>(offset, std::move(inner), std::move(old), image_bytes);
}

}  // namespace i2z
