// Zarr codec "crc32c" (zarr-v3-format.md §3.6): {"name": "crc32c"}, no configuration.
// Output = input + CRC-32C(input) as 4 little-endian bytes. Worst case: n + 4.
#include <array>
#include <bit>
#include <cstring>
#include <string>

#include "codecs/codec.hpp"
#include "i2z/error.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace i2z {

namespace {

// Slicing-by-8 tables for the reflected Castagnoli polynomial.
constexpr auto kTables = [] {
  std::array<std::array<std::uint32_t, 256>, 8> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    t[0][i] = c;
  }
  for (std::size_t s = 1; s < 8; ++s)
    for (std::size_t i = 0; i < 256; ++i) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
  return t;
}();

// Works on the raw (pre-inverted) register value.
std::uint32_t crc_table(const std::uint8_t* p, std::size_t n, std::uint32_t c) noexcept {
  for (; n >= 8; n -= 8, p += 8) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
    v ^= c;
    c = kTables[7][v & 0xFF] ^ kTables[6][(v >> 8) & 0xFF] ^ kTables[5][(v >> 16) & 0xFF] ^
        kTables[4][(v >> 24) & 0xFF] ^ kTables[3][(v >> 32) & 0xFF] ^ kTables[2][(v >> 40) & 0xFF] ^
        kTables[1][(v >> 48) & 0xFF] ^ kTables[0][v >> 56];
  }
  for (; n; --n, ++p) c = (c >> 8) ^ kTables[0][(c ^ *p) & 0xFF];
  return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t crc_sse42(const std::uint8_t* p, std::size_t n,
                                                           std::uint32_t c) noexcept {
  std::uint64_t c64 = c;
  for (; n >= 8; n -= 8, p += 8) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);  // unaligned-safe load
    c64 = _mm_crc32_u64(c64, v);
  }
  c = static_cast<std::uint32_t>(c64);
  for (; n; --n, ++p) c = _mm_crc32_u8(c, *p);
  return c;
}
bool has_sse42() noexcept {
  static const bool yes = (__builtin_cpu_init(), __builtin_cpu_supports("sse4.2"));
  return yes;
}
#endif

class Crc32cCodec final : public BytesCodec {
 public:
  nlohmann::json to_json() const override { return {{"name", "crc32c"}}; }
  std::size_t max_encoded_size(std::size_t n) const override { return n + 4; }

  std::size_t encode(const std::uint8_t* in, std::size_t n, std::uint8_t* out, std::size_t cap) const override {
    if (cap < n + 4) fail(ErrorKind::Runtime, "crc32c: output buffer too small");
    if (n) std::memmove(out, in, n);
    const std::uint32_t c = crc32c(in, n);
    for (int i = 0; i < 4; ++i) out[n + i] = static_cast<std::uint8_t>(c >> (8 * i));
    return n + 4;
  }

  void decode(std::span<const std::uint8_t> in, std::vector<std::uint8_t>& out,
              std::size_t expected) const override {
    if (in.size() < 4)
      fail(ErrorKind::Corrupt, "crc32c: input of " + std::to_string(in.size()) + " bytes has no checksum");
    const std::size_t n = in.size() - 4;
    if (expected && n != expected)
      fail(ErrorKind::Corrupt,
           "crc32c: payload is " + std::to_string(n) + " bytes, expected " + std::to_string(expected));
    const std::uint32_t stored = std::uint32_t{in[n]} | std::uint32_t{in[n + 1]} << 8 |
                                 std::uint32_t{in[n + 2]} << 16 | std::uint32_t{in[n + 3]} << 24;
    if (crc32c(in.data(), n) != stored) fail(ErrorKind::Corrupt, "crc32c: checksum mismatch");
    out.assign(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(n));
  }
};

}  // namespace

std::uint32_t crc32c(const std::uint8_t* data, std::size_t n, std::uint32_t crc) noexcept {
  // `crc` is a finished CRC (init/final XOR applied), so calls can be chained.
  std::uint32_t c = ~crc;
#if defined(__x86_64__)
  if (has_sse42()) return ~crc_sse42(data, n, c);
#endif
  return ~crc_table(data, n, c);
}

std::unique_ptr<BytesCodec> make_crc32c_codec(const nlohmann::json& config, std::size_t) {
  if (!config.is_null() && !(config.is_object() && config.empty()))
    fail(ErrorKind::Value, "crc32c: takes no configuration, got " + config.dump());
  return std::make_unique<Crc32cCodec>();
}

}  // namespace i2z
