// Bodies of the libFuzzer harnesses, shared with the regression GoogleTest
// (cpp/tests/test_fuzz_regressions.cpp) so that a saved input replays the exact code path.
//
// Contract checked on every input: the code under test either succeeds or throws i2z::Error.
// Any other exception escapes (libFuzzer reports it as a crash, GoogleTest as a failure), and
// the invariants below abort via fuzz_check(): an image passing probe() stays within max_pixels,
// its shape agrees with its pixel count, and decode() writes nothing past info.byte_size() (a
// guard zone catches writes by the uninstrumented C libraries that ASan cannot see).
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "formats/format.hpp"
#include "formats/png_fast.hpp"
#include "i2z/error.hpp"
#include "i2z/reader.hpp"
#include "i2z/store.hpp"
#include "zarr/metadata.hpp"
#include "zarr/shard_index.hpp"

namespace i2z::fuzz {

inline void fuzz_check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz invariant violated: %s\n", what);
  std::abort();
}

// The decoders take paths: inputs go to one anonymous in-memory file per thread, reached as
// /proc/self/fd/N (no disk I/O, nothing left behind).
class ScratchFile {
 public:
  ScratchFile() {
    fd_ = ::memfd_create("i2z-fuzz", MFD_CLOEXEC);
    fuzz_check(fd_ >= 0, "memfd_create failed");
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~ScratchFile() { ::close(fd_); }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  const std::string& write(const std::uint8_t* data, std::size_t size) {
    fuzz_check(::ftruncate(fd_, 0) == 0, "ftruncate failed");
    std::size_t done = 0;
    while (done < size) {
      const ssize_t n = ::pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
      fuzz_check(n > 0, "pwrite failed");
      done += static_cast<std::size_t>(n);
    }
    return path_;
  }

 private:
  int fd_ = -1;
  std::string path_;
};

inline ScratchFile& scratch_file() {
  thread_local ScratchFile f;
  return f;
}

// Small enough that a hostile header cannot make a single execution slow or large (<= 32 MiB of
// float64 pixels), large enough for every seed.
constexpr std::uint64_t kFuzzMaxPixels = std::uint64_t{1} << 22;
constexpr std::size_t kGuard = 64;
constexpr std::uint8_t kGuardByte = 0xA5;

inline void run_format(const Format& format, const std::uint8_t* data, std::size_t size, const FormatOptions& options) {
  const std::string& path = scratch_file().write(data, size);
  ImageInfo info;
  try {
    info = format.probe(path, options);
  } catch (const Error&) {
    return;
  }
  fuzz_check(info.height > 0 && info.width > 0 && info.channels > 0, "probe returned an empty image");
  fuzz_check(info.pixel_count() <= options.max_pixels, "probe accepted an image above max_pixels");
  std::uint64_t shape_product = 1;
  for (auto d : info.shape) shape_product *= d;
  fuzz_check(shape_product == info.pixel_count(), "shape does not match height*width*channels");
  const std::size_t bytes = static_cast<std::size_t>(info.byte_size());
  // Uninitialised on purpose (a real decode buffer is too); 8-byte aligned by operator new.
  std::unique_ptr<std::uint8_t[]> buf(new std::uint8_t[bytes + kGuard]);
  std::memset(buf.get() + bytes, kGuardByte, kGuard);
  try {
    format.decode(path, options, info, buf.get());
  } catch (const Error&) {
  }
  for (std::size_t i = 0; i < kGuard; ++i)
    fuzz_check(buf[bytes + i] == kGuardByte, "decode wrote past info.byte_size()");
}

// libpng rejects any chunk whose CRC does not match, so nearly every mutation would only reach
// the CRC check. Recompute the CRCs of the chunks (where the structure allows) before decoding.
inline std::vector<std::uint8_t> png_fix_crcs(const std::uint8_t* data, std::size_t size) {
  std::vector<std::uint8_t> out(data, data + size);
  static const auto table = [] {
    std::vector<std::uint32_t> t(256);
    for (std::uint32_t n = 0; n < 256; ++n) {
      std::uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  std::size_t pos = 8;
  while (pos + 12 <= out.size()) {
    const std::uint32_t len = std::uint32_t{out[pos]} << 24 | std::uint32_t{out[pos + 1]} << 16 |
                              std::uint32_t{out[pos + 2]} << 8 | out[pos + 3];
    if (len > out.size() - pos - 12) break;
    std::uint32_t c = 0xFFFFFFFFu;
    for (std::size_t i = pos + 4; i < pos + 8 + len; ++i) c = table[(c ^ out[i]) & 0xFF] ^ (c >> 8);
    c ^= 0xFFFFFFFFu;
    const std::size_t at = pos + 8 + len;
    out[at] = static_cast<std::uint8_t>(c >> 24);
    out[at + 1] = static_cast<std::uint8_t>(c >> 16);
    out[at + 2] = static_cast<std::uint8_t>(c >> 8);
    out[at + 3] = static_cast<std::uint8_t>(c);
    pos = at + 4;
  }
  return out;
}

inline void fuzz_png(const std::uint8_t* data, std::size_t size) {
  FormatOptions o;
  o.max_pixels = kFuzzMaxPixels;
  const auto fixed = png_fix_crcs(data, size);
  run_format(png_format(), fixed.data(), fixed.size(), o);
}

// Differential: the fast PNG path against libpng alone on the same bytes (as given, and with
// the CRCs recomputed so that mutations reach the zlib data). The fast path may refuse; when it
// accepts, libpng must succeed with the very same bytes. Neither may write past the buffer.
inline void png_diff_one(const std::uint8_t* data, std::size_t size) {
  FormatOptions o;
  o.max_pixels = kFuzzMaxPixels;
  ImageInfo info;
  try {
    info = png_format().probe(scratch_file().write(data, size), o);
  } catch (const Error&) {
    return;
  }
  const std::size_t bytes = static_cast<std::size_t>(info.byte_size());
  std::unique_ptr<std::uint8_t[]> fast(new std::uint8_t[bytes + kGuard]), lib(new std::uint8_t[bytes + kGuard]);
  std::memset(fast.get() + bytes, kGuardByte, kGuard);
  std::memset(lib.get() + bytes, kGuardByte, kGuard);
  const bool fast_ok = png_decode_fast(data, size, o, info, fast.get());
  bool lib_ok = true;
  try {
    png_decode_libpng(data, size, o, info, lib.get());
  } catch (const Error&) {
    lib_ok = false;
  }
  for (std::size_t i = 0; i < kGuard; ++i) {
    fuzz_check(fast[bytes + i] == kGuardByte, "fast PNG path wrote past info.byte_size()");
    fuzz_check(lib[bytes + i] == kGuardByte, "libpng decode wrote past info.byte_size()");
  }
  if (!fast_ok) return;
  fuzz_check(lib_ok, "fast PNG path accepted a file libpng rejects");
  fuzz_check(std::memcmp(fast.get(), lib.get(), bytes) == 0, "fast PNG path pixels differ from libpng");
}

inline void fuzz_png_diff(const std::uint8_t* data, std::size_t size) {
  png_diff_one(data, size);
  const auto fixed = png_fix_crcs(data, size);
  if (fixed != std::vector<std::uint8_t>(data, data + size)) png_diff_one(fixed.data(), fixed.size());
}

inline void fuzz_jpeg(const std::uint8_t* data, std::size_t size) {
  FormatOptions o;
  o.max_pixels = kFuzzMaxPixels;
  run_format(jpeg_format(), data, size, o);
}

inline void fuzz_tiff(const std::uint8_t* data, std::size_t size) {
  FormatOptions o;
  o.max_pixels = kFuzzMaxPixels;
  run_format(tiff_format(), data, size, o);
}

// The default HDU choice, the last HDU, and two HDUs stacked as channels.
inline void fuzz_fits(const std::uint8_t* data, std::size_t size) {
  FormatOptions o;
  o.max_pixels = kFuzzMaxPixels;
  run_format(fits_format(), data, size, o);
  o.fits_extension = {FitsSelector{-1}};
  run_format(fits_format(), data, size, o);
  o.fits_extension = {FitsSelector{0}, FitsSelector{std::string("SCI")}};
  run_format(fits_format(), data, size, o);
}

// ---------------------------------------------------------------------------------------------
// Read side.

// A read-only in-memory store with the LocalStore's clipping semantics. `fallback`, when set,
// answers every missing key under "c/" or "images/c/" (a chunk or shard of any array shape).
class MemStore final : public Store {
 public:
  void put(const std::string& key, const std::uint8_t* p, std::size_t n) { objects_[key] = Bytes(p, p + n); }
  void put(const std::string& key, std::string_view s) {
    put(key, reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
  }
  void set_fallback(Bytes b) { fallback_ = std::move(b); }

  std::optional<Bytes> get(const std::string& key) override { return get_range(key, 0, ~std::uint64_t{0}); }
  std::optional<Bytes> get_range(const std::string& key, std::uint64_t off, std::uint64_t len) override {
    const Bytes* b = find(key);
    if (!b) return std::nullopt;
    if (off >= b->size()) return Bytes{};
    len = std::min<std::uint64_t>(len, b->size() - off);
    return Bytes(b->begin() + static_cast<std::ptrdiff_t>(off), b->begin() + static_cast<std::ptrdiff_t>(off + len));
  }
  std::optional<Bytes> get_suffix(const std::string& key, std::uint64_t len) override {
    const Bytes* b = find(key);
    if (!b) return std::nullopt;
    const std::uint64_t n = std::min<std::uint64_t>(len, b->size());
    return Bytes(b->end() - static_cast<std::ptrdiff_t>(n), b->end());
  }
  std::optional<std::uint64_t> size(const std::string& key) override {
    const Bytes* b = find(key);
    if (!b) return std::nullopt;
    return b->size();
  }
  void set(const std::string&, std::span<const std::uint8_t>) override { fail(ErrorKind::IO, "read-only store"); }
  std::unique_ptr<ObjectWriter> open_writer(const std::string&) override { fail(ErrorKind::IO, "read-only store"); }
  void erase(const std::string&) override { fail(ErrorKind::IO, "read-only store"); }
  std::vector<std::string> list(const std::string& prefix) override {
    std::vector<std::string> out;
    for (const auto& [k, v] : objects_)
      if (k.starts_with(prefix)) out.push_back(k);
    return out;
  }
  std::string describe() const override { return "mem://fuzz"; }

 private:
  const Bytes* find(const std::string& key) const {
    if (auto it = objects_.find(key); it != objects_.end()) return &it->second;
    if (fallback_ && (key.starts_with("c/") || key.starts_with("images/c/"))) return &*fallback_;
    return nullptr;
  }
  std::map<std::string, Bytes> objects_;
  std::optional<Bytes> fallback_;
};

// Reads every item in order, then a scattered, unsorted, repeating selection; both must fit a
// small output buffer (the templates are tiny; the zarr.json harness checks before calling).
inline void read_some(const ArrayReader& r) {
  const std::uint64_t n = r.length();
  if (n == 0 || r.item_bytes() == 0) return;
  std::vector<std::uint8_t> out(static_cast<std::size_t>(std::min<std::uint64_t>(n, 64)) * r.item_bytes());
  const std::uint64_t k = std::min<std::uint64_t>(n, 64);
  try {
    r.read_range(0, k, out.data());
  } catch (const Error&) {
  }
  const std::uint64_t idx[] = {n - 1, 0, n / 2, 0};
  std::vector<std::uint8_t> out2(4 * r.item_bytes());
  try {
    r.read(idx, out2.data());
  } catch (const Error&) {
  }
}

struct ShardTemplate {
  const char* zarr_json;
  const char* key;
};

inline const std::vector<ShardTemplate>& shard_templates() {
  static const std::vector<ShardTemplate> t{
#include "shard_templates.inc"
  };
  return t;
}

// Input: one selector byte (template index, modulo the count) + the object under its key.
inline void fuzz_shard(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return;
  const auto& templates = shard_templates();
  const ShardTemplate& t = templates[data[0] % templates.size()];
  const std::span<const std::uint8_t> obj(data + 1, size - 1);

  // The index decoder alone, on the whole object read as an index (size-consistent or not).
  try {
    decode_shard_index(obj, obj.size() >= 4 ? (obj.size() - 4) / 16 : 0, obj.size());
  } catch (const Error&) {
  }
  try {
    decode_shard_index(obj, data[0], 0);
  } catch (const Error&) {
  }

  auto store = std::make_shared<MemStore>();
  store->put("zarr.json", t.zarr_json);
  store->put(t.key, obj.data(), obj.size());
  ReaderOptions o;
  o.threads = 1;
  std::unique_ptr<ArrayReader> r;
  try {
    r = std::make_unique<ArrayReader>(store, "", o);
  } catch (const Error&) {
    fuzz_check(false, "a shard template's zarr.json does not open");
  }
  read_some(*r);
}

// Input: a zarr.json document. Parsed alone, then opened as the root array (and, for a group,
// as its images/ array) of a store whose every chunk/shard key holds the same small blob, so
// planning, fill values, index reads and chunk decoding all run on the parsed metadata.
inline void fuzz_zarr_json(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    ArrayMeta m = parse_array_meta(text, "fuzz/zarr.json");
    (void)dump_json(array_meta_to_json(m));
    (void)m.chunks_per_shard();
    (void)m.read_chunk_bytes();
  } catch (const Error&) {
  }
  auto store = std::make_shared<MemStore>();
  store->put("zarr.json", text);
  store->put("images/zarr.json", text);
  // Any fixed bytes do: a shard index read from them fails its size or CRC check, a plain chunk
  // fails to decode to the chunk size; both must be clean errors, whatever the metadata says.
  static const Bytes blob = [] {
    Bytes b(36, 0xFF);
    for (std::size_t i = 0; i < 4; ++i) b[32 + i] = static_cast<std::uint8_t>(i);
    return b;
  }();
  store->set_fallback(blob);
  try {
    (void)group_attributes_json(*store);
  } catch (const Error&) {
  }
  ReaderOptions o;
  o.threads = 1;
  o.index_cache_bytes = 1 << 20;
  try {
    auto r = open_image_array(store, o);
    if (r->item_bytes() <= (std::size_t{64} << 10)) read_some(*r);
  } catch (const Error&) {
  }
}

using Target = void (*)(const std::uint8_t*, std::size_t);

struct NamedTarget {
  const char* name;
  Target fn;
};

inline const std::vector<NamedTarget>& all_targets() {
  static const std::vector<NamedTarget> t{{"png", fuzz_png},     {"png_diff", fuzz_png_diff}, {"jpeg", fuzz_jpeg},
                                          {"tiff", fuzz_tiff},
                                          {"fits", fuzz_fits},   {"shard", fuzz_shard}, {"zarr_json", fuzz_zarr_json}};
  return t;
}

}  // namespace i2z::fuzz
