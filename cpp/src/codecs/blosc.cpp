// Zarr codec "blosc" (zarr-v3-format.md §3.3): c-blosc 1.x frames, readable by numcodecs/tensorstore.
//   {"name": "blosc", "configuration": {"typesize": 2, "cname": "lz4", "clevel": 5,
//                                       "shuffle": "shuffle", "blocksize": 0}}
// cname lz4|lz4hc|blosclz|zstd|zlib; clevel 0-9; shuffle noshuffle|shuffle|bitshuffle;
// typesize 1-255 (missing = the array's element size); blocksize >= 0 (0 = auto).
// Missing cname/clevel/shuffle take zarr-python's defaults (zstd, 5, bitshuffle for 1-byte items
// else shuffle). Worst case: n + 16. Max input per chunk: 2^31 - 1 - 16 bytes.
#include <blosc.h>

#include <array>
#include <climits>
#include <string>

#include "codecs/codec.hpp"
#include "i2z/error.hpp"

namespace i2z {

namespace {

using nlohmann::json;

constexpr std::array<const char*, 5> kCnames{"lz4", "lz4hc", "blosclz", "zstd", "zlib"};
constexpr std::array<const char*, 3> kShuffles{"noshuffle", "shuffle", "bitshuffle"};  // index = BLOSC_* value

[[noreturn]] void bad(const std::string& field, const json& v, const std::string& want) {
  fail(ErrorKind::Value, "blosc: invalid " + field + " " + v.dump() + " (expected " + want + ")");
}

long long get_int(const json& cfg, const char* key, long long lo, long long hi, long long def) {
  auto it = cfg.find(key);
  if (it == cfg.end()) return def;
  if (!it->is_number_integer() || it->get<long long>() < lo || it->get<long long>() > hi)
    bad(key, *it, "an integer " + std::to_string(lo) + ".." + std::to_string(hi));
  return it->get<long long>();
}

template <std::size_t N>
std::size_t get_choice(const json& cfg, const char* key, const std::array<const char*, N>& names, std::size_t def) {
  auto it = cfg.find(key);
  if (it == cfg.end()) return def;
  for (std::size_t i = 0; it->is_string() && i < N; ++i)
    if (it->get<std::string>() == names[i]) return i;
  std::string want;
  for (auto* n : names) want += (want.empty() ? "" : "|") + std::string(n);
  bad(key, *it, want);
}

std::size_t le32(const std::uint8_t* p) {
  return std::size_t{p[0]} | std::size_t{p[1]} << 8 | std::size_t{p[2]} << 16 | std::size_t{p[3]} << 24;
}

class BloscCodec final : public BytesCodec {
 public:
  BloscCodec(int typesize, std::string cname, int clevel, int shuffle, int blocksize)
      : typesize_(typesize), cname_(std::move(cname)), clevel_(clevel), shuffle_(shuffle), blocksize_(blocksize) {}

  json to_json() const override {
    return {{"name", "blosc"},
            {"configuration",
             {{"typesize", typesize_}, {"cname", cname_}, {"clevel", clevel_},
              {"shuffle", kShuffles[static_cast<std::size_t>(shuffle_)]}, {"blocksize", blocksize_}}}};
  }

  std::size_t max_encoded_size(std::size_t n) const override { return n + BLOSC_MAX_OVERHEAD; }

  std::size_t encode(const std::uint8_t* in, std::size_t n, std::uint8_t* out, std::size_t cap) const override {
    if (n > BLOSC_MAX_BUFFERSIZE)
      fail(ErrorKind::Value, "blosc: chunk of " + std::to_string(n) + " bytes exceeds the c-blosc 1.x limit of " +
                                 std::to_string(BLOSC_MAX_BUFFERSIZE) + " bytes; use smaller chunks");
    // The _ctx variant uses no global state (thread-safe, ignores BLOSC_* env vars).
    const int r = blosc_compress_ctx(clevel_, shuffle_, static_cast<std::size_t>(typesize_), n, in, out, cap,
                                     cname_.c_str(), static_cast<std::size_t>(blocksize_), 1);
    if (r <= 0) fail(ErrorKind::Runtime, "blosc: compression failed (code " + std::to_string(r) + ")");
    return static_cast<std::size_t>(r);
  }

  void decode(std::span<const std::uint8_t> in, std::vector<std::uint8_t>& out,
              std::size_t expected) const override {
    const std::size_t nbytes = validate(in, expected);
    out.resize(nbytes);
    decompress(in, out.data(), nbytes);
  }

  void decode_into(std::span<const std::uint8_t> in, std::uint8_t* out, std::size_t n) const override {
    const std::size_t nbytes = validate(in, n);
    if (nbytes != n)
      fail(ErrorKind::Corrupt, "blosc: frame holds " + std::to_string(nbytes) + " bytes, expected " + std::to_string(n));
    decompress(in, out, n);
  }

 private:
  // The decoded size of a frame, after checks that a hostile header cannot get past.
  static std::size_t validate(std::span<const std::uint8_t> in, std::size_t expected) {
    // Validate before decompressing: blosc_decompress_ctx trusts the header's sizes.
    std::size_t nbytes = 0;
    if (in.size() < BLOSC_MIN_HEADER_LENGTH || blosc_cbuffer_validate(in.data(), in.size(), &nbytes) != 0)
      fail(ErrorKind::Corrupt, "blosc: invalid or truncated frame (" + std::to_string(in.size()) + " bytes)");
    // Cheap consistency checks so a corrupt size field cannot drive a huge allocation: a memcpy
    // frame is header + raw bytes; otherwise a 4-byte start offset per block follows the header.
    const std::size_t blocksize = le32(in.data() + 8);
    const bool memcpyed = in[2] & BLOSC_MEMCPYED;
    if (nbytes > 0 && (memcpyed ? in.size() != nbytes + BLOSC_MAX_OVERHEAD
                                : blocksize == 0 || 16 + 4 * ((nbytes + blocksize - 1) / blocksize) > in.size()))
      fail(ErrorKind::Corrupt, "blosc: inconsistent frame header");
    // A frame header (a hostile one too) can claim up to 2 GiB from a 20-byte frame. No blosc
    // frame expands more than 32768:1 (its best inner codec, zstd, cannot), so refuse before
    // allocating.
    if (nbytes / 32768 > in.size())
      fail(ErrorKind::Corrupt, "blosc: frame of " + std::to_string(in.size()) + " bytes cannot hold the " +
                                   std::to_string(nbytes) + " bytes its header claims");
    if (expected && nbytes != expected)
      fail(ErrorKind::Corrupt, "blosc: frame holds " + std::to_string(nbytes) + " bytes, expected " +
                                   std::to_string(expected));
    return nbytes;
  }

  static void decompress(std::span<const std::uint8_t> in, std::uint8_t* out, std::size_t nbytes) {
    if (nbytes == 0) return;
    // Typesize and shuffle come from the frame header, not from our JSON (older writers differ).
    const int r = blosc_decompress_ctx(in.data(), out, nbytes, 1);
    if (r < 0 || static_cast<std::size_t>(r) != nbytes)
      fail(ErrorKind::Corrupt, "blosc: corrupt frame (decompress returned " + std::to_string(r) + ")");
  }

  int typesize_;
  std::string cname_;
  int clevel_, shuffle_, blocksize_;
};

}  // namespace

std::unique_ptr<BytesCodec> make_blosc_codec(const json& config, std::size_t typesize) {
  const json& cfg = config.is_null() ? json::object() : config;
  if (!cfg.is_object()) fail(ErrorKind::Value, "blosc: configuration must be an object, got " + cfg.dump());
  for (const auto& [k, v] : cfg.items())
    if (k != "typesize" && k != "cname" && k != "clevel" && k != "shuffle" && k != "blocksize")
      fail(ErrorKind::Value, "blosc: unknown configuration key '" + k + "'");
  const auto def_ts = static_cast<long long>(typesize >= 1 && typesize <= 255 ? typesize : 1);
  const auto ts = static_cast<int>(get_int(cfg, "typesize", 1, BLOSC_MAX_TYPESIZE, def_ts));
  const std::size_t cname = get_choice(cfg, "cname", kCnames, 3);
  const auto clevel = static_cast<int>(get_int(cfg, "clevel", 0, 9, 5));
  const std::size_t shuffle = get_choice(cfg, "shuffle", kShuffles, ts == 1 ? BLOSC_BITSHUFFLE : BLOSC_SHUFFLE);
  const auto blocksize = static_cast<int>(get_int(cfg, "blocksize", 0, INT_MAX, 0));
  if (blosc_compname_to_compcode(kCnames[cname]) < 0)
    fail(ErrorKind::Value, std::string("blosc: cname '") + kCnames[cname] + "' is not built into this c-blosc");
  return std::make_unique<BloscCodec>(ts, kCnames[cname], clevel, static_cast<int>(shuffle), blocksize);
}

}  // namespace i2z
