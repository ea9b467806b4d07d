// Zarr codec "zstd" (zarr-v3-format.md §3.4): one standard zstd frame per chunk.
//   {"name": "zstd", "configuration": {"level": 0, "checksum": false}}
// level -131072..22 (0 = library default, missing = 0); checksum adds the frame's XXH64 content
// checksum (missing = false). The frame always records the content size (numcodecs < 0.16.2 needs
// it). Worst case: ZSTD_compressBound(n).
#include <zstd.h>

#include <algorithm>
#include <string>

#include "codecs/codec.hpp"
#include "i2z/error.hpp"

namespace i2z {

namespace {

using nlohmann::json;

constexpr int kMinLevel = -131072;  // ZSTD_minCLevel() of libzstd 1.5 (= -ZSTD_TARGETLENGTH_MAX)
constexpr int kMaxLevel = 22;
constexpr std::size_t kMaxUnknownOutput = std::size_t{4} << 30;  // cap when the size is not known

struct CCtxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxDeleter {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

// One context per thread: contexts are not thread-safe, and allocating one per chunk is costly.
ZSTD_CCtx* cctx() {
  thread_local std::unique_ptr<ZSTD_CCtx, CCtxDeleter> c(ZSTD_createCCtx());
  if (!c) fail(ErrorKind::Runtime, "zstd: out of memory creating a compression context");
  return c.get();
}
ZSTD_DCtx* dctx() {
  thread_local std::unique_ptr<ZSTD_DCtx, DCtxDeleter> d(ZSTD_createDCtx());
  if (!d) fail(ErrorKind::Runtime, "zstd: out of memory creating a decompression context");
  return d.get();
}

// Sum of the declared content sizes of all frames, ZSTD_CONTENTSIZE_UNKNOWN if any frame lacks it.
// (ZSTD_findDecompressedSize does this but is not part of the stable API.)
unsigned long long declared_size(std::span<const std::uint8_t> in) {
  unsigned long long total = 0;
  for (std::size_t pos = 0; pos < in.size();) {
    const unsigned long long fcs = ZSTD_getFrameContentSize(in.data() + pos, in.size() - pos);
    const std::size_t csize = ZSTD_findFrameCompressedSize(in.data() + pos, in.size() - pos);
    if (fcs == ZSTD_CONTENTSIZE_ERROR || ZSTD_isError(csize))
      fail(ErrorKind::Corrupt, "zstd: invalid or truncated frame");
    if (fcs == ZSTD_CONTENTSIZE_UNKNOWN) return fcs;
    // A block of <= 128 KiB output takes >= 4 input bytes (RLE), so a frame cannot expand more
    // than 32768:1; a larger declared size is corrupt and must not drive the allocation.
    if (fcs > 32768ull * csize)
      fail(ErrorKind::Corrupt, "zstd: frame of " + std::to_string(csize) + " bytes declares an impossible " +
                                   std::to_string(fcs) + " bytes");
    total += fcs;
    if (total > kMaxUnknownOutput)
      fail(ErrorKind::Corrupt, "zstd: frames declare " + std::to_string(total) + " bytes (over the 4 GiB cap)");
    pos += csize;
  }
  return total;
}

[[noreturn]] void corrupt(const char* what, std::size_t code) {
  fail(ErrorKind::Corrupt, std::string("zstd: ") + what + " (" + ZSTD_getErrorName(code) + ")");
}

class ZstdCodec final : public BytesCodec {
 public:
  ZstdCodec(int level, bool checksum) : level_(level), checksum_(checksum) {}

  json to_json() const override {
    return {{"name", "zstd"}, {"configuration", {{"level", level_}, {"checksum", checksum_}}}};
  }

  std::size_t max_encoded_size(std::size_t n) const override { return ZSTD_compressBound(n); }

  std::size_t encode(const std::uint8_t* in, std::size_t n, std::uint8_t* out, std::size_t cap) const override {
    ZSTD_CCtx* c = cctx();
    // ZSTD_compress2 rather than ZSTD_compressCCtx: the latter ignores the checksum parameter.
    // Both are one-shot, so the frame header carries the content size.
    ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level_);
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, checksum_ ? 1 : 0);
    const std::size_t r = ZSTD_compress2(c, out, cap, in, n);
    if (ZSTD_isError(r)) fail(ErrorKind::Runtime, std::string("zstd: compression failed: ") + ZSTD_getErrorName(r));
    return r;
  }

  void decode(std::span<const std::uint8_t> in, std::vector<std::uint8_t>& out,
              std::size_t expected) const override {
    if (in.empty()) fail(ErrorKind::Corrupt, "zstd: empty input");
    // `expected` comes from zarr.json, which may be hostile: no input expands more than 32768:1
    // (see declared_size), so refuse an impossible size before allocating it.
    if (expected / 32768 > in.size())
      fail(ErrorKind::Corrupt, "zstd: " + std::to_string(in.size()) + " bytes cannot decode to the expected " +
                                   std::to_string(expected) + " bytes");
    // Initial output size: `expected`, else the sum of the frames' declared sizes, else a guess.
    std::size_t size = expected;
    if (!size) {
      const unsigned long long total = declared_size(in);
      size = total == ZSTD_CONTENTSIZE_UNKNOWN ? std::max<std::size_t>(4 * in.size(), 1024)
                                               : static_cast<std::size_t>(total);
    }
    out.resize(size);

    // Streaming loop: handles unknown content size and concatenated frames. When a whole frame
    // fits into the output, zstd decodes it in one pass straight into `out`.
    ZSTD_DCtx* d = dctx();
    ZSTD_DCtx_reset(d, ZSTD_reset_session_only);
    ZSTD_inBuffer src{in.data(), in.size(), 0};
    ZSTD_outBuffer dst{out.data(), out.size(), 0};
    for (;;) {
      const std::size_t in0 = src.pos, out0 = dst.pos;
      const std::size_t ret = ZSTD_decompressStream(d, &dst, &src);
      if (ZSTD_isError(ret)) corrupt("corrupt data", ret);
      if (ret == 0 && src.pos == src.size) break;  // every frame complete and flushed
      if (src.pos != in0 || dst.pos != out0) continue;
      // No progress: either the output is full (grow unless the size is fixed) or input ran out.
      if (dst.pos < dst.size) fail(ErrorKind::Corrupt, "zstd: truncated frame");
      if (expected)
        fail(ErrorKind::Corrupt, "zstd: data decodes to more than the expected " + std::to_string(expected) + " bytes");
      if (out.size() >= kMaxUnknownOutput) fail(ErrorKind::Corrupt, "zstd: output exceeds the 4 GiB cap");
      out.resize(std::min(std::max<std::size_t>(out.size() * 2, 1 << 16), kMaxUnknownOutput));
      dst.dst = out.data();
      dst.size = out.size();
    }
    if (expected && dst.pos != expected)
      fail(ErrorKind::Corrupt,
           "zstd: decoded " + std::to_string(dst.pos) + " bytes, expected " + std::to_string(expected));
    out.resize(dst.pos);
  }

 private:
  int level_;
  bool checksum_;
};

}  // namespace

std::unique_ptr<BytesCodec> make_zstd_codec(const json& config, std::size_t) {
  const json& cfg = config.is_null() ? json::object() : config;
  if (!cfg.is_object()) fail(ErrorKind::Value, "zstd: configuration must be an object, got " + cfg.dump());
  int level = 0;
  bool checksum = false;
  for (const auto& [k, v] : cfg.items()) {
    if (k == "level") {
      if (!v.is_number_integer() || v.get<long long>() < kMinLevel || v.get<long long>() > kMaxLevel)
        fail(ErrorKind::Value, "zstd: invalid level " + v.dump() + " (expected an integer -131072..22)");
      level = v.get<int>();
    } else if (k == "checksum") {
      if (!v.is_boolean()) fail(ErrorKind::Value, "zstd: invalid checksum " + v.dump() + " (expected true|false)");
      checksum = v.get<bool>();
    } else {
      fail(ErrorKind::Value, "zstd: unknown configuration key '" + k + "'");
    }
  }
  return std::make_unique<ZstdCodec>(level, checksum);
}

}  // namespace i2z
