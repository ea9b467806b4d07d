// bytes -> bytes codecs of the Zarr v3 chain (blosc, zstd, gzip, crc32c). The array -> bytes
// step ("bytes" codec) is a byte-order decision handled by CodecChain, not a class here.
// A codec is resolved once from its JSON (ranges checked, clear error naming the field) and is
// then immutable and safe to share between threads.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace i2z {

class BytesCodec {
 public:
  virtual ~BytesCodec() = default;
  // {"name": ..., "configuration": {...}} exactly as written into zarr.json.
  virtual nlohmann::json to_json() const = 0;
  // Upper bound of encode() output for n input bytes.
  virtual std::size_t max_encoded_size(std::size_t n) const = 0;
  // Encodes into out[0..cap); returns the encoded length. Throws i2z::Error on failure.
  virtual std::size_t encode(const std::uint8_t* in, std::size_t n, std::uint8_t* out, std::size_t cap) const = 0;
  // Decodes `in` into `out` (resized). `expected` is the decoded size when known (0 = unknown).
  // Corrupt input throws i2z::Error(ErrorKind::Corrupt, ...).
  virtual void decode(std::span<const std::uint8_t> in, std::vector<std::uint8_t>& out,
                      std::size_t expected) const = 0;
  // Decodes into exactly n bytes at `out` (Corrupt unless the data decodes to n bytes). The
  // default goes through decode() and a copy; codecs that can write in place override it.
  virtual void decode_into(std::span<const std::uint8_t> in, std::uint8_t* out, std::size_t n) const;
};

// An allocator whose resize() leaves new bytes uninitialised: encode output buffers are sized
// to the worst case and then overwritten by the codec, so zero-filling them is wasted work.
template <class T>
struct UninitAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = UninitAllocator<U>;
  };
  UninitAllocator() = default;
  template <class U>
  UninitAllocator(const UninitAllocator<U>&) noexcept {}
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... A>
  void construct(U* p, A&&... a) {
    ::new (static_cast<void*>(p)) U(std::forward<A>(a)...);
  }
};
using ByteBuffer = std::vector<std::uint8_t, UninitAllocator<std::uint8_t>>;

// Factory signature of one codec file: (configuration object, element size in bytes).
using CodecFactory = std::unique_ptr<BytesCodec> (*)(const nlohmann::json& config, std::size_t typesize);

// A codec from its zarr.json entry (object or bare string); unknown names throw ValueError.
std::unique_ptr<BytesCodec> make_codec(const nlohmann::json& entry, std::size_t typesize);

// The user-facing compressor names of convert(): lz4 | blosc | zstd | gzip | zlib | none.
// Returns nullptr for "none". Unknown name or out-of-range clevel -> ValueError listing valid values.
std::unique_ptr<BytesCodec> make_compressor(std::string_view name, int clevel, std::size_t typesize);
const std::vector<std::string>& compressor_names();

// CRC-32C (Castagnoli), hardware-accelerated when the CPU has SSE4.2.
std::uint32_t crc32c(const std::uint8_t* data, std::size_t n, std::uint32_t crc = 0) noexcept;

// Per-codec factories, one per file; registered by name in registry.cpp.
std::unique_ptr<BytesCodec> make_blosc_codec(const nlohmann::json& config, std::size_t typesize);
std::unique_ptr<BytesCodec> make_zstd_codec(const nlohmann::json& config, std::size_t typesize);
std::unique_ptr<BytesCodec> make_gzip_codec(const nlohmann::json& config, std::size_t typesize);
std::unique_ptr<BytesCodec> make_crc32c_codec(const nlohmann::json& config, std::size_t typesize);

// The inner chain of a chunk: array->bytes byte order, then bytes->bytes codecs in order.
class CodecChain {
 public:
  CodecChain() = default;
  CodecChain(bool big_endian, std::size_t typesize, std::vector<std::unique_ptr<BytesCodec>> codecs)
      : big_endian_(big_endian), typesize_(typesize), codecs_(std::move(codecs)) {}
  // Parses a "codecs" list (exactly one "bytes" array->bytes codec; "transpose" is rejected).
  static CodecChain from_json(const nlohmann::json& codecs, std::size_t typesize);
  nlohmann::json to_json() const;
  std::size_t max_encoded_size(std::size_t n) const;
  // Encodes one raw chunk (native little-endian elements). `scratch` is reused between calls.
  // The result is in `out` (resized to the encoded length). Buf: std::vector<std::uint8_t> or
  // ByteBuffer (no zero-fill; the engine recycles these).
  template <class Buf>
  void encode(std::span<const std::uint8_t> raw, Buf& out, Buf& scratch) const;
  // Decodes into exactly `raw_size` bytes of native-endian elements; throws Corrupt otherwise.
  void decode(std::span<const std::uint8_t> encoded, std::vector<std::uint8_t>& out, std::size_t raw_size,
              std::vector<std::uint8_t>& scratch) const;
  // The same into raw_size bytes at dst (e.g. straight into a reader's output); tmp and scratch
  // hold the intermediate results of a chain of several codecs.
  void decode_into(std::span<const std::uint8_t> encoded, std::uint8_t* dst, std::size_t raw_size,
                   std::vector<std::uint8_t>& tmp, std::vector<std::uint8_t>& scratch) const;
  bool empty() const { return codecs_.empty() && !big_endian_; }

 private:
  bool big_endian_ = false;
  std::size_t typesize_ = 1;
  std::vector<std::unique_ptr<BytesCodec>> codecs_;
};

}  // namespace i2z
