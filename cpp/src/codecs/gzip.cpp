// Zarr codec "gzip" (zarr-v3-format.md §3.5): RFC 1952 gzip container (1f 8b 08 ...), not raw zlib.
//   {"name": "gzip", "configuration": {"level": 5}}
// level 0-9 (missing = 5, zarr-python's default). libdeflate writes MTIME = 0, so output is
// deterministic. Decoding accepts concatenated members. Worst case: libdeflate_gzip_compress_bound.
#include <libdeflate.h>

#include <algorithm>
#include <array>
#include <string>

#include "codecs/codec.hpp"
#include "i2z/error.hpp"

namespace i2z {

namespace {

using nlohmann::json;

constexpr std::size_t kMaxUnknownOutput = std::size_t{4} << 30;  // cap when the size is not known

struct CompressorDeleter {
  void operator()(libdeflate_compressor* c) const { libdeflate_free_compressor(c); }
};
struct DecompressorDeleter {
  void operator()(libdeflate_decompressor* d) const { libdeflate_free_decompressor(d); }
};

// libdeflate objects are not thread-safe and a compressor is large (up to ~1 MiB): one per
// thread and level, created on first use.
libdeflate_compressor* compressor(int level) {
  thread_local std::array<std::unique_ptr<libdeflate_compressor, CompressorDeleter>, 10> c;
  auto& slot = c[static_cast<std::size_t>(level)];
  if (!slot) slot.reset(libdeflate_alloc_compressor(level));
  if (!slot) fail(ErrorKind::Runtime, "gzip: cannot allocate a libdeflate compressor");
  return slot.get();
}
libdeflate_decompressor* decompressor() {
  thread_local std::unique_ptr<libdeflate_decompressor, DecompressorDeleter> d(libdeflate_alloc_decompressor());
  if (!d) fail(ErrorKind::Runtime, "gzip: cannot allocate a libdeflate decompressor");
  return d.get();
}

class GzipCodec final : public BytesCodec {
 public:
  explicit GzipCodec(int level) : level_(level) {}

  json to_json() const override { return {{"name", "gzip"}, {"configuration", {{"level", level_}}}}; }

  std::size_t max_encoded_size(std::size_t n) const override {
    return libdeflate_gzip_compress_bound(compressor(level_), n);
  }

  std::size_t encode(const std::uint8_t* in, std::size_t n, std::uint8_t* out, std::size_t cap) const override {
    const std::size_t r = libdeflate_gzip_compress(compressor(level_), in, n, out, cap);
    if (r == 0) fail(ErrorKind::Runtime, "gzip: output buffer too small");
    return r;
  }

  void decode(std::span<const std::uint8_t> in, std::vector<std::uint8_t>& out,
              std::size_t expected) const override {
    if (in.empty()) fail(ErrorKind::Corrupt, "gzip: empty input");
    // `expected` comes from zarr.json, which may be hostile: DEFLATE cannot expand more than
    // 1032:1, so refuse an impossible size before allocating it.
    if (expected / 1032 > in.size())
      fail(ErrorKind::Corrupt, "gzip: " + std::to_string(in.size()) + " bytes cannot decode to the expected " +
                                   std::to_string(expected) + " bytes");
    std::size_t size = expected;
    if (!size) {
      // Guess from the last member's ISIZE trailer (size mod 2^32), grown below if wrong. DEFLATE
      // cannot exceed ~1032:1, so a larger ISIZE is corrupt and must not drive the allocation.
      std::size_t isize = 0;
      if (in.size() >= 18)
        for (int i = 0; i < 4; ++i) isize |= std::size_t{in[in.size() - 4 + i]} << (8 * i);
      size = std::min({std::max({isize, 2 * in.size(), std::size_t{1024}}), 1032 * in.size(), kMaxUnknownOutput});
    }
    out.resize(size);
    libdeflate_decompressor* d = decompressor();
    std::size_t ipos = 0, opos = 0;
    while (ipos < in.size()) {  // one gzip member per iteration
      std::size_t used_in = 0, produced = 0;
      const auto r = libdeflate_gzip_decompress_ex(d, in.data() + ipos, in.size() - ipos, out.data() + opos,
                                                   out.size() - opos, &used_in, &produced);
      if (r == LIBDEFLATE_INSUFFICIENT_SPACE) {
        if (expected)
          fail(ErrorKind::Corrupt,
               "gzip: data decodes to more than the expected " + std::to_string(expected) + " bytes");
        if (out.size() >= kMaxUnknownOutput) fail(ErrorKind::Corrupt, "gzip: output exceeds the 4 GiB cap");
        out.resize(std::min(out.size() * 2, kMaxUnknownOutput));
        continue;  // libdeflate cannot resume: redo this member with the larger buffer
      }
      if (r != LIBDEFLATE_SUCCESS)
        fail(ErrorKind::Corrupt, "gzip: corrupt or truncated data (libdeflate code " + std::to_string(r) + ")");
      ipos += used_in;
      opos += produced;
    }
    if (expected && opos != expected)
      fail(ErrorKind::Corrupt,
           "gzip: decoded " + std::to_string(opos) + " bytes, expected " + std::to_string(expected));
    out.resize(opos);
  }

 private:
  int level_;
};

}  // namespace

std::unique_ptr<BytesCodec> make_gzip_codec(const json& config, std::size_t) {
  const json& cfg = config.is_null() ? json::object() : config;
  if (!cfg.is_object()) fail(ErrorKind::Value, "gzip: configuration must be an object, got " + cfg.dump());
  int level = 5;
  for (const auto& [k, v] : cfg.items()) {
    if (k != "level") fail(ErrorKind::Value, "gzip: unknown configuration key '" + k + "'");
    if (!v.is_number_integer() || v.get<long long>() < 0 || v.get<long long>() > 9)
      fail(ErrorKind::Value, "gzip: invalid level " + v.dump() + " (expected an integer 0..9)");
    level = v.get<int>();
  }
  return std::make_unique<GzipCodec>(level);
}

}  // namespace i2z
