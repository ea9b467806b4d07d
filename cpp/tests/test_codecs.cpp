// Unit tests of the bytes -> bytes codecs, the codec registry and CodecChain.
#include <gtest/gtest.h>
#include <zstd.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <thread>

#include "codecs/codec.hpp"
#include "i2z/error.hpp"

namespace i2z {
namespace {

using nlohmann::json;
using Bytes = std::vector<std::uint8_t>;

Bytes from_hex(std::string_view h) {
  Bytes out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2)
    out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
  return out;
}

// A smooth signal plus a little noise, as little-endian elements of `typesize` bytes.
Bytes smooth_noise(std::size_t nbytes, std::size_t typesize, unsigned seed = 1) {
  std::mt19937 rng(seed);
  Bytes out(nbytes);
  for (std::size_t i = 0; i < nbytes; ++i) {
    const std::size_t e = i / typesize;
    const auto v = static_cast<std::uint64_t>(3000 + 2000 * std::sin(static_cast<double>(e) / 300.0)) + rng() % 8;
    out[i] = static_cast<std::uint8_t>(v >> (8 * (i % typesize)));
  }
  return out;
}

json J(const char* s) { return json::parse(s); }

// A blosc zarr.json entry; typesize 0 = leave it out.
json blosc_entry(const char* cname, int clevel, const char* shuffle, int blocksize = 0, int typesize = 0) {
  json cfg = {{"cname", cname}, {"clevel", clevel}, {"shuffle", shuffle}, {"blocksize", blocksize}};
  if (typesize) cfg["typesize"] = typesize;
  return {{"name", "blosc"}, {"configuration", cfg}};
}

Bytes encode(const BytesCodec& c, const Bytes& in) {
  Bytes out(c.max_encoded_size(in.size()));
  out.resize(c.encode(in.data(), in.size(), out.data(), out.size()));
  return out;
}

Bytes decode(const BytesCodec& c, const Bytes& in, std::size_t expected) {
  Bytes out;
  c.decode(in, out, expected);
  return out;
}

template <class F>
void expect_error(F&& f, ErrorKind kind, const std::string& needle = "") {
  try {
    f();
    ADD_FAILURE() << "no i2z::Error thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "'" << e.what() << "' lacks '" << needle << "'";
  }
}

// Bitwise reference CRC-32C.
std::uint32_t crc_ref(const std::uint8_t* p, std::size_t n) {
  std::uint32_t c = ~0u;
  for (std::size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
  }
  return ~c;
}

// ---- crc32c ---------------------------------------------------------------------------------

TEST(Crc32c, CheckValues) {
  const std::string s = "123456789";
  EXPECT_EQ(crc32c(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()), 0xE3069283u);
  EXPECT_EQ(crc32c(nullptr, 0), 0u);
}

TEST(Crc32c, MatchesReferenceAtAnyLengthAndAlignment) {
  const Bytes d = smooth_noise(4096 + 64, 1, 7);
  for (std::size_t off = 0; off < 9; ++off)
    for (std::size_t n : {0, 1, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4096})
      ASSERT_EQ(crc32c(d.data() + off, n), crc_ref(d.data() + off, n)) << off << " " << n;
}

TEST(Crc32c, Chains) {
  const Bytes d = smooth_noise(1000, 1);
  EXPECT_EQ(crc32c(d.data() + 333, 667, crc32c(d.data(), 333)), crc32c(d.data(), 1000));
}

TEST(Crc32cCodec, AppendsLittleEndianChecksum) {
  auto c = make_codec("crc32c", 1);
  const Bytes in{'1', '2', '3', '4', '5', '6', '7', '8', '9'};
  const Bytes enc = encode(*c, in);
  ASSERT_EQ(enc.size(), 13u);
  EXPECT_EQ(Bytes(enc.begin() + 9, enc.end()), (Bytes{0x83, 0x92, 0x06, 0xe3}));
  EXPECT_EQ(decode(*c, enc, 9), in);
  EXPECT_EQ(encode(*c, {}), (Bytes{0, 0, 0, 0}));
  EXPECT_EQ(c->to_json(), json({{"name", "crc32c"}}));
}

TEST(Crc32cCodec, RejectsMismatchAndShortInput) {
  auto c = make_codec("crc32c", 1);
  Bytes enc = encode(*c, smooth_noise(100, 1));
  enc[50] ^= 1;
  expect_error([&] { decode(*c, enc, 0); }, ErrorKind::Corrupt, "checksum mismatch");
  expect_error([&] { decode(*c, {1, 2, 3}, 0); }, ErrorKind::Corrupt);
  expect_error([&] { make_codec(json{{"name", "crc32c"}, {"configuration", {{"x", 1}}}}, 1); }, ErrorKind::Value);
}

// ---- round trips of every codec -------------------------------------------------------------

const json kRoundTripCodecs[] = {
    blosc_entry("lz4", 5, "shuffle"),
    blosc_entry("lz4hc", 9, "bitshuffle"),
    blosc_entry("blosclz", 1, "noshuffle", 4096),
    blosc_entry("zstd", 3, "shuffle"),
    blosc_entry("zlib", 0, "shuffle"),
    {{"name", "zstd"}, {"configuration", {{"level", 3}, {"checksum", false}}}},
    {{"name", "zstd"}, {"configuration", {{"level", -5}, {"checksum", true}}}},
    {{"name", "zstd"}, {"configuration", {{"level", 19}, {"checksum", false}}}},
    {{"name", "gzip"}, {"configuration", {{"level", 0}}}},
    {{"name", "gzip"}, {"configuration", {{"level", 5}}}},
    {{"name", "gzip"}, {"configuration", {{"level", 9}}}},
    {{"name", "crc32c"}},
};

class RoundTrip : public ::testing::TestWithParam<json> {};

TEST_P(RoundTrip, SmoothPlusNoise) {
  for (std::size_t ts : {1, 2, 4, 8}) {
    auto c = make_codec(GetParam(), ts);
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{1000} * ts + 3, std::size_t{1} << 20}) {
      if (n == (std::size_t{1} << 20) && GetParam()["name"] == "zstd" && GetParam()["configuration"]["level"] == 19)
        continue;  // level 19 on 1 MiB is slow under sanitizers; smaller sizes cover it
      const Bytes in = smooth_noise(n, ts, static_cast<unsigned>(n + ts));
      const Bytes enc = encode(*c, in);
      ASSERT_LE(enc.size(), c->max_encoded_size(n));
      EXPECT_EQ(decode(*c, enc, n), in) << GetParam().dump() << " ts=" << ts << " n=" << n;
      EXPECT_EQ(decode(*c, enc, 0), in) << "unknown size; " << GetParam().dump() << " ts=" << ts << " n=" << n;
      const std::string cfg = GetParam().dump();
      const bool should_compress = ts > 1 && GetParam()["name"] != "crc32c" &&
                                   cfg.find("noshuffle") == std::string::npos &&
                                   cfg.find("level\":0") == std::string::npos;  // also matches clevel 0
      if (n == (std::size_t{1} << 20) && should_compress) {
        EXPECT_LT(enc.size(), n) << "smooth data should compress: " << cfg << " ts=" << ts;
      }
    }
  }
}

// Truncated input must throw i2z::Error; random corruption must throw i2z::Error or decode
// to something, never crash (ASan/UBSan builds catch over-reads).
TEST_P(RoundTrip, CorruptInputNeverCrashes) {
  auto c = make_codec(GetParam(), 2);
  const Bytes in = smooth_noise(20000, 2);
  const Bytes enc = encode(*c, in);
  for (std::size_t cut : {std::size_t{0}, std::size_t{1}, std::size_t{3}, std::size_t{15}, enc.size() / 2,
                          enc.size() - 1}) {
    const Bytes t(enc.begin(), enc.begin() + static_cast<std::ptrdiff_t>(cut));
    EXPECT_THROW(decode(*c, t, in.size()), Error) << "cut=" << cut;
    EXPECT_THROW(decode(*c, t, 0), Error) << "cut=" << cut;
  }
  std::mt19937 rng(42);
  for (int iter = 0; iter < 300; ++iter) {
    Bytes bad = enc;
    const int flips = 1 + iter % 4;
    for (int f = 0; f < flips; ++f) {
      // Bias towards the header, where sizes live.
      const std::size_t pos = (iter % 2) ? rng() % std::min<std::size_t>(bad.size(), 32) : rng() % bad.size();
      bad[pos] = static_cast<std::uint8_t>(rng());
    }
    for (std::size_t expected : {in.size(), std::size_t{0}}) {
      try {
        const Bytes out = decode(*c, bad, expected);
        if (expected) {
          EXPECT_EQ(out.size(), expected);
        }
      } catch (const Error&) {
      }
    }
  }
  std::vector<std::uint8_t> garbage(5000);
  for (auto& b : garbage) b = static_cast<std::uint8_t>(rng());
  EXPECT_THROW(decode(*c, garbage, in.size()), Error);
}

INSTANTIATE_TEST_SUITE_P(AllCodecs, RoundTrip, ::testing::ValuesIn(kRoundTripCodecs));

TEST(Codecs, SharedBetweenThreads) {
  for (const auto& cfg : kRoundTripCodecs) {
    auto c = make_codec(cfg, 2);
    const Bytes in = smooth_noise(200000, 2);
    const Bytes ref = encode(*c, in);
    std::vector<std::thread> ts;
    std::vector<int> ok(4, 0);
    for (int t = 0; t < 4; ++t)
      ts.emplace_back([&, t] {
        bool good = true;
        for (int i = 0; i < 3; ++i) good = good && encode(*c, in) == ref && decode(*c, ref, in.size()) == in;
        ok[static_cast<std::size_t>(t)] = good;
      });
    for (auto& t : ts) t.join();
    for (int v : ok) EXPECT_TRUE(v) << cfg.dump();
  }
}

// ---- blosc ------------------------------------------------------------------------------------

TEST(Blosc, FrameHeader) {
  const Bytes in = smooth_noise(65536, 2);
  for (const char* shuffle : {"noshuffle", "shuffle", "bitshuffle"}) {
    auto c = make_codec(blosc_entry("lz4", 5, shuffle, 0, 2), 2);
    const Bytes enc = encode(*c, in);
    ASSERT_GE(enc.size(), 16u);
    EXPECT_EQ(enc[0], 2);  // c-blosc 1.x format version
    EXPECT_EQ(enc[3], 2);  // typesize
    EXPECT_EQ((enc[2] >> 5) & 7, 1) << "lz4 codec bits";
    EXPECT_EQ(enc[2] & 1, std::string(shuffle) == "shuffle" ? 1 : 0) << shuffle;
    EXPECT_EQ((enc[2] >> 2) & 1, std::string(shuffle) == "bitshuffle" ? 1 : 0) << shuffle;
    auto le32 = [&](std::size_t o) {
      return std::uint32_t{enc[o]} | enc[o + 1] << 8 | enc[o + 2] << 16 | std::uint32_t{enc[o + 3]} << 24;
    };
    EXPECT_EQ(le32(4), in.size());
    EXPECT_EQ(le32(12), enc.size());
  }
  auto z = make_codec(blosc_entry("zstd", 3, "shuffle", 0, 4), 2);
  const Bytes ez = encode(*z, in);
  EXPECT_EQ(ez[3], 4);
  EXPECT_EQ((ez[2] >> 5) & 7, 4) << "zstd codec bits";
}

TEST(Blosc, ToJsonWritesAllFiveKeysAndTypesizeDefaultsToFactoryArgument) {
  auto c = make_codec(blosc_entry("lz4", 5, "shuffle"), 4);
  EXPECT_EQ(c->to_json(), blosc_entry("lz4", 5, "shuffle", 0, 4));
  EXPECT_EQ(c->to_json()["configuration"].size(), 5u);
  EXPECT_EQ(encode(*c, smooth_noise(4096, 4))[3], 4);
  auto d = make_codec({{"name", "blosc"}}, 1);  // zarr-python defaults
  EXPECT_EQ(d->to_json(), blosc_entry("zstd", 5, "bitshuffle", 0, 1));
}

TEST(Blosc, ConfigErrorsNameTheField) {
  auto mk = [](json cfg) { return make_codec({{"name", "blosc"}, {"configuration", cfg}}, 2); };
  expect_error([&] { mk({{"clevel", 10}}); }, ErrorKind::Value, "clevel 10");
  expect_error([&] { mk({{"clevel", "5"}}); }, ErrorKind::Value, "clevel");
  expect_error([&] { mk({{"cname", "snappy"}}); }, ErrorKind::Value, "cname \"snappy\"");
  expect_error([&] { mk({{"shuffle", "auto"}}); }, ErrorKind::Value, "shuffle \"auto\"");
  expect_error([&] { mk({{"shuffle", 1}}); }, ErrorKind::Value, "shuffle 1");
  expect_error([&] { mk({{"typesize", 0}}); }, ErrorKind::Value, "typesize 0");
  expect_error([&] { mk({{"typesize", 256}}); }, ErrorKind::Value, "typesize 256");
  expect_error([&] { mk({{"blocksize", -1}}); }, ErrorKind::Value, "blocksize -1");
  expect_error([&] { mk({{"level", 1}}); }, ErrorKind::Value, "'level'");
  expect_error([&] { mk(json::array()); }, ErrorKind::Value, "blosc");
}

TEST(Blosc, RejectsSizeMismatchAndTrailingBytes) {
  auto c = make_compressor("lz4", 5, 2);
  const Bytes in = smooth_noise(1000, 2);
  Bytes enc = encode(*c, in);
  expect_error([&] { decode(*c, enc, 998); }, ErrorKind::Corrupt, "expected 998");
  enc.push_back(0);
  expect_error([&] { decode(*c, enc, 0); }, ErrorKind::Corrupt);
}

// ---- zstd ---------------------------------------------------------------------------------------

TEST(Zstd, FrameCarriesContentSizeAndChecksumFlag) {
  const Bytes in = smooth_noise(100000, 2);
  for (bool checksum : {false, true}) {
    auto c = make_codec({{"name", "zstd"}, {"configuration", {{"level", 3}, {"checksum", checksum}}}}, 2);
    const Bytes enc = encode(*c, in);
    EXPECT_EQ(Bytes(enc.begin(), enc.begin() + 4), (Bytes{0x28, 0xb5, 0x2f, 0xfd}));
    EXPECT_EQ(ZSTD_getFrameContentSize(enc.data(), enc.size()), in.size());
    EXPECT_EQ((enc[4] >> 2) & 1, checksum ? 1 : 0) << "Content_Checksum_flag";
    EXPECT_EQ(c->to_json(), json({{"name", "zstd"}, {"configuration", {{"level", 3}, {"checksum", checksum}}}}));
  }
  auto c = make_codec("zstd", 1);
  EXPECT_EQ(ZSTD_getFrameContentSize(encode(*c, {}).data(), encode(*c, {}).size()), 0u);
}

// A frame without content size, as streaming writers without a pledged size produce.
Bytes zstd_stream_frame(const Bytes& in) {
  ZSTD_CCtx* cc = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
  Bytes out(ZSTD_compressBound(in.size()) + 64);
  ZSTD_inBuffer src{in.data(), in.size(), 0};
  ZSTD_outBuffer dst{out.data(), out.size(), 0};
  std::size_t r;
  do {
    r = ZSTD_compressStream2(cc, &dst, &src, ZSTD_e_end);
  } while (r != 0 && !ZSTD_isError(r));
  ZSTD_freeCCtx(cc);
  out.resize(dst.pos);
  return out;
}

TEST(Zstd, DecodesUnknownContentSizeAndConcatenatedFrames) {
  auto c = make_codec("zstd", 2);
  const Bytes a = smooth_noise(1 << 20, 2, 1), b = smooth_noise(12345, 2, 2);
  const Bytes fa = zstd_stream_frame(a);
  ASSERT_EQ(ZSTD_getFrameContentSize(fa.data(), fa.size()), ZSTD_CONTENTSIZE_UNKNOWN);
  EXPECT_EQ(decode(*c, fa, 0), a);  // output grows geometrically
  EXPECT_EQ(decode(*c, fa, a.size()), a);
  Bytes two = fa;
  const Bytes fb = encode(*c, b);
  two.insert(two.end(), fb.begin(), fb.end());
  Bytes ab = a;
  ab.insert(ab.end(), b.begin(), b.end());
  EXPECT_EQ(decode(*c, two, 0), ab);
  EXPECT_EQ(decode(*c, two, ab.size()), ab);
  Bytes known = encode(*c, b);
  known.insert(known.end(), fb.begin(), fb.end());
  Bytes bb = b;
  bb.insert(bb.end(), b.begin(), b.end());
  EXPECT_EQ(decode(*c, known, 0), bb);
  expect_error([&] { decode(*c, two, ab.size() - 1); }, ErrorKind::Corrupt);
  expect_error([&] { decode(*c, two, ab.size() + 1); }, ErrorKind::Corrupt);
}

TEST(Zstd, ConfigErrors) {
  auto mk = [](json cfg) { return make_codec({{"name", "zstd"}, {"configuration", cfg}}, 2); };
  expect_error([&] { mk({{"level", 23}}); }, ErrorKind::Value, "level 23");
  expect_error([&] { mk({{"level", -131073}}); }, ErrorKind::Value, "level -131073");
  expect_error([&] { mk({{"checksum", 1}}); }, ErrorKind::Value, "checksum 1");
  expect_error([&] { mk({{"clevel", 1}}); }, ErrorKind::Value, "'clevel'");
  EXPECT_NO_THROW(mk({{"level", -131072}}));
}

// ---- gzip ---------------------------------------------------------------------------------------

TEST(Gzip, ContainerHeaderIsDeterministic) {
  auto c = make_codec({{"name", "gzip"}, {"configuration", {{"level", 5}}}}, 1);
  const Bytes in = smooth_noise(10000, 1);
  const Bytes enc = encode(*c, in);
  EXPECT_EQ(Bytes(enc.begin(), enc.begin() + 3), (Bytes{0x1f, 0x8b, 0x08}));
  EXPECT_EQ(Bytes(enc.begin() + 4, enc.begin() + 8), (Bytes{0, 0, 0, 0})) << "MTIME must be 0";
  EXPECT_EQ(encode(*c, in), enc);
  EXPECT_EQ(c->to_json(), json({{"name", "gzip"}, {"configuration", {{"level", 5}}}}));
}

TEST(Gzip, DecodesConcatenatedMembersAndGrowsOutput) {
  auto c = make_codec({{"name", "gzip"}, {"configuration", {{"level", 6}}}}, 1);
  const Bytes a(3 << 20, 7), b = smooth_noise(100, 1);  // `a` compresses ~1000:1
  Bytes two = encode(*c, a);
  const Bytes eb = encode(*c, b);
  two.insert(two.end(), eb.begin(), eb.end());  // last ISIZE (100) is a bad size hint
  Bytes ab = a;
  ab.insert(ab.end(), b.begin(), b.end());
  EXPECT_EQ(decode(*c, two, 0), ab);
  EXPECT_EQ(decode(*c, two, ab.size()), ab);
  expect_error([&] { decode(*c, two, ab.size() - 1); }, ErrorKind::Corrupt);
  expect_error([&] { decode(*c, two, ab.size() + 1); }, ErrorKind::Corrupt);
}

TEST(Gzip, ConfigErrors) {
  auto mk = [](int level) { return make_codec({{"name", "gzip"}, {"configuration", {{"level", level}}}}, 1); };
  expect_error([&] { mk(10); }, ErrorKind::Value, "level 10");
  expect_error([&] { mk(-1); }, ErrorKind::Value, "level -1");
  EXPECT_EQ(make_codec({{"name", "gzip"}}, 1)->to_json()["configuration"]["level"], 5);
}

// ---- payloads written by zarr-python 3.1.6 / numcodecs 0.16.6 ---------------------------------
// Produced with (MemoryStore, one chunk holding the whole array, hex of the stored chunk):
//   import numpy as np, zarr
//   from zarr.codecs import BloscCodec, ZstdCodec, GzipCodec
//   from zarr.storage import MemoryStore
//   def chunk(data, c):
//       s = MemoryStore()
//       a = zarr.create_array(s, shape=data.shape, chunks=data.shape, dtype="uint16",
//                             compressors=c, fill_value=0)
//       a[:] = data
//       return s._store_dict["c/0"].to_bytes().hex()
//   ramp = np.arange(32, dtype="uint16")            # 64 bytes
//   steps = np.arange(256, dtype="uint16") // 16    # 512 bytes
//   chunk(ramp, BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"))
//   chunk(ramp, ZstdCodec(level=3)); chunk(ramp, GzipCodec(level=5))
//   chunk(steps, BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"))
//   chunk(steps, BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"))

Bytes u16_le(std::size_t n, std::uint16_t (*f)(std::size_t)) {
  Bytes out;
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(static_cast<std::uint8_t>(f(i)));
    out.push_back(static_cast<std::uint8_t>(f(i) >> 8));
  }
  return out;
}

TEST(Interop, DecodesZarrPythonPayloads) {
  const Bytes ramp = u16_le(32, [](std::size_t i) { return static_cast<std::uint16_t>(i); });
  const Bytes steps = u16_le(256, [](std::size_t i) { return static_cast<std::uint16_t>(i / 16); });
  const json blosc = blosc_entry("lz4", 5, "shuffle", 0, 2);
  struct Case {
    json codec;
    const char* hex;
    const Bytes& want;
  } cases[] = {
      {blosc,
       "0201330240000000400000005000000000000100020003000400050006000700080009000a000b000c000d000e000f001000"
       "1100120013001400150016001700180019001a001b001c001d001e001f00",
       ramp},
      {{{"name", "zstd"}, {"configuration", {{"level", 3}, {"checksum", false}}}},
       "28b52ffd20404501000204090710f8cc01132353bbdcad368bbd5aabd4a9340a7d3a9bcca532893c1a8bc4a130087c0700", ramp},
      {{{"name", "gzip"}, {"configuration", {{"level", 5}}}},
       "1f8b08005d790c6b00ff05c18301c0000000a066dbfeffcb15815024964865728552a5d668757a83d164b6586d7687d3e5f6787d"
       "7ee9f650f940000000",
       ramp},
      {blosc,
       "0201210200020000000200006d00000014000000460000001b0001001b0101001b0201001b0301001b0401001b0501001b0601"
       "001b0701001b0801001b0901001b0a01001b0b01001b0c01001b0d01001b0e0100160f0100500f0f0f0f0f0b0000001f000100"
       "e7500000000000",
       steps},
      {blosc_entry("zstd", 3, "bitshuffle", 0, 2),
       "0201940200020000000200003e000000140000002600000028b52ffd600001e50000300000ffffff0008007c4015d00f47c44c06"
       "2f04ac08a4ac60d11101",
       steps},
  };
  for (const auto& k : cases) {
    auto c = make_codec(k.codec, 2);
    EXPECT_EQ(decode(*c, from_hex(k.hex), k.want.size()), k.want) << k.codec.dump();
    EXPECT_EQ(decode(*c, from_hex(k.hex), 0), k.want) << k.codec.dump();
  }
  // Our encoders write the same JSON and, for deterministic codecs, the same bytes.
  EXPECT_EQ(make_codec(blosc, 2)->to_json(), blosc);
  EXPECT_EQ(encode(*make_codec(blosc, 2), ramp), from_hex(cases[0].hex));
  EXPECT_EQ(encode(*make_codec(blosc, 2), steps), from_hex(cases[3].hex));
}

// ---- registry -----------------------------------------------------------------------------------

TEST(Registry, MakeCodecForms) {
  EXPECT_EQ(make_codec("crc32c", 4)->to_json(), json({{"name", "crc32c"}}));
  EXPECT_EQ(make_codec(json{{"name", "crc32c"}}, 4)->to_json(), json({{"name", "crc32c"}}));
  EXPECT_EQ(make_codec(J(R"({"name":"zstd"})"), 4)->to_json(),
            J(R"({"name":"zstd","configuration":{"level":0,"checksum":false}})"));
  EXPECT_EQ(make_codec(J(R"({"name":"gzip","configuration":{"level":1},"must_understand":true})"), 4)->to_json(),
            J(R"({"name":"gzip","configuration":{"level":1}})"));
  expect_error([] { make_codec("snappy", 1); }, ErrorKind::Value, "'snappy'");
  expect_error([] { make_codec(J(R"({"name":"lzma","configuration":{}})"), 1); }, ErrorKind::Value, "'lzma'");
  expect_error([] { make_codec(json{{"configuration", json::object()}}, 1); }, ErrorKind::Value, "name");
  expect_error([] { make_codec(json(3), 1); }, ErrorKind::Value);
}

TEST(Registry, MakeCompressor) {
  EXPECT_EQ(make_compressor("lz4", 5, 2)->to_json(), blosc_entry("lz4", 5, "shuffle", 0, 2));
  EXPECT_EQ(make_compressor("lz4", 3, 1)->to_json(), blosc_entry("lz4", 3, "shuffle", 0, 1));
  EXPECT_EQ(make_compressor("blosc", 5, 2)->to_json(), make_compressor("lz4", 5, 2)->to_json());
  EXPECT_EQ(make_compressor("zstd", -3, 2)->to_json(),
            J(R"({"name":"zstd","configuration":{"level":-3,"checksum":false}})"));
  EXPECT_EQ(make_compressor("gzip", 9, 2)->to_json(), json::parse(R"({"name":"gzip","configuration":{"level":9}})"));
  EXPECT_EQ(make_compressor("zlib", 4, 2)->to_json(), json::parse(R"({"name":"gzip","configuration":{"level":4}})"));
  EXPECT_EQ(make_compressor("none", 5, 2), nullptr);
  expect_error([] { make_compressor("lz4", 10, 2); }, ErrorKind::Value, "clevel 10");
  expect_error([] { make_compressor("blosc", -1, 2); }, ErrorKind::Value, "'blosc'");
  expect_error([] { make_compressor("gzip", 10, 2); }, ErrorKind::Value, "'gzip'");
  expect_error([] { make_compressor("zlib", -1, 2); }, ErrorKind::Value, "clevel -1");
  expect_error([] { make_compressor("zstd", 23, 2); }, ErrorKind::Value, "clevel 23");
  EXPECT_NO_THROW(make_compressor("zstd", -131072, 2));
  expect_error([] { make_compressor("brotli", 5, 2); }, ErrorKind::Value,
               "unknown compressor 'brotli'; valid: lz4, blosc, zstd, gzip, zlib, none");
  EXPECT_EQ(compressor_names(), (std::vector<std::string>{"lz4", "blosc", "zstd", "gzip", "zlib", "none"}));
}

// ---- CodecChain ---------------------------------------------------------------------------------

TEST(Chain, ToJson) {
  const json multi = json::parse(R"([{"name":"bytes","configuration":{"endian":"little"}},
      {"name":"blosc","configuration":{"typesize":2,"cname":"lz4","clevel":5,"shuffle":"shuffle","blocksize":0}},
      {"name":"crc32c"}])");
  EXPECT_EQ(CodecChain::from_json(multi, 2).to_json(), multi);
  EXPECT_EQ(CodecChain::from_json(json::parse(R"(["bytes"])"), 1).to_json(), json::parse(R"([{"name":"bytes"}])"));
  EXPECT_EQ(CodecChain::from_json(json::parse(R"([{"name":"bytes","configuration":{"endian":"big"}}])"), 1).to_json(),
            json::parse(R"([{"name":"bytes"}])"));
  EXPECT_EQ(CodecChain::from_json(json::parse(R"([{"name":"bytes"}])"), 4).to_json(),
            json::parse(R"([{"name":"bytes","configuration":{"endian":"little"}}])"));
  EXPECT_EQ(CodecChain::from_json(json::parse(R"([{"name":"bytes","configuration":{"endian":"big"}}])"), 4).to_json(),
            json::parse(R"([{"name":"bytes","configuration":{"endian":"big"}}])"));
  EXPECT_TRUE(CodecChain::from_json(json::parse(R"([{"name":"bytes","configuration":{}}])"), 2).empty());
  EXPECT_FALSE(CodecChain::from_json(json::parse(R"([{"name":"bytes","configuration":{"endian":"big"}}])"), 2).empty());
}

TEST(Chain, Rejections) {
  auto bad = [](const char* s, const char* needle) {
    expect_error([&] { CodecChain::from_json(json::parse(s), 2); }, ErrorKind::Value, needle);
  };
  bad(R"([{"name":"transpose","configuration":{"order":[1,0]}},{"name":"bytes"}])", "transpose codec is not supported");
  bad(R"([{"name":"bytes"},{"name":"sharding_indexed","configuration":{}}])", "nested sharding");
  bad(R"([{"name":"sharding_indexed","configuration":{}}])", "nested sharding");
  bad(R"([{"name":"zstd"}])", "bytes");
  bad(R"([{"name":"bytes"},{"name":"bytes"}])", "exactly one");
  bad(R"([])", "bytes");
  bad(R"({"name":"bytes"})", "list");
  bad(R"([{"name":"bytes","configuration":{"endian":"middle"}}])", "endian \"middle\"");
  bad(R"([{"name":"bytes"},{"name":"lzma"}])", "'lzma'");
}

TEST(Chain, EncodeDecodeRoundTrip) {
  const Bytes raw = smooth_noise(50000, 4);
  Bytes out, scratch, back;
  for (const char* spec : {R"(["bytes"])", R"(["bytes","crc32c"])", R"(["bytes",{"name":"zstd"}])",
                           R"([{"name":"bytes","configuration":{"endian":"little"}},{"name":"gzip"},"crc32c"])",
                           R"(["bytes",{"name":"blosc"},{"name":"zstd"},"crc32c"])",
                           R"([{"name":"bytes","configuration":{"endian":"big"}},{"name":"blosc"},"crc32c"])",
                           R"([{"name":"bytes","configuration":{"endian":"big"}}])"}) {
    const CodecChain chain = CodecChain::from_json(json::parse(spec), 4);
    chain.encode(raw, out, scratch);
    EXPECT_LE(out.size(), chain.max_encoded_size(raw.size())) << spec;
    const Bytes enc = out;
    chain.decode(enc, back, raw.size(), scratch);
    EXPECT_EQ(back, raw) << spec;
    expect_error([&] { chain.decode(enc, back, raw.size() + 4, scratch); }, ErrorKind::Corrupt);
    // decode_into writes the same bytes in place, and only exactly raw.size() of them.
    Bytes dst(raw.size() + 8, 0xAB), tmp;
    chain.decode_into(enc, dst.data() + 4, raw.size(), tmp, scratch);
    EXPECT_EQ(Bytes(dst.begin() + 4, dst.end() - 4), raw) << spec;
    EXPECT_EQ(dst[3], 0xAB) << spec;
    EXPECT_EQ(dst[raw.size() + 4], 0xAB) << spec;
    expect_error([&] { chain.decode_into(enc, dst.data(), raw.size() - 4, tmp, scratch); }, ErrorKind::Corrupt);
    expect_error([&] { chain.decode_into(enc, dst.data(), raw.size() + 4, tmp, scratch); }, ErrorKind::Corrupt);
  }
}

TEST(Chain, BigEndianSwapsElements) {
  const CodecChain be = CodecChain::from_json(json::parse(R"([{"name":"bytes","configuration":{"endian":"big"}}])"), 2);
  const Bytes raw{0x01, 0x02, 0x03, 0x04};
  Bytes out, scratch, back;
  be.encode(raw, out, scratch);
  EXPECT_EQ(out, (Bytes{0x02, 0x01, 0x04, 0x03}));
  be.decode(out, back, 4, scratch);
  EXPECT_EQ(back, raw);
  const CodecChain be8 = CodecChain::from_json(J(R"([{"name":"bytes","configuration":{"endian":"big"}},"crc32c"])"), 8);
  const Bytes r8{1, 2, 3, 4, 5, 6, 7, 8};
  be8.encode(r8, out, scratch);
  EXPECT_EQ(Bytes(out.begin(), out.begin() + 8), (Bytes{8, 7, 6, 5, 4, 3, 2, 1}));
  be8.decode(out, back, 8, scratch);
  EXPECT_EQ(back, r8);
}

TEST(Chain, MaxEncodedSizeComposes) {
  const CodecChain chain = CodecChain::from_json(json::parse(R"(["bytes",{"name":"blosc"},"crc32c"])"), 2);
  EXPECT_EQ(chain.max_encoded_size(1000), 1000u + 16 + 4);
  EXPECT_EQ(CodecChain::from_json(json::parse(R"(["bytes"])"), 2).max_encoded_size(1000), 1000u);
}

}  // namespace
}  // namespace i2z
