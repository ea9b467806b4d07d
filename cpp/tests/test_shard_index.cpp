// Shard index encode/decode on the known-answer bytes of zarr-v3-format.md §8.1.
#include <gtest/gtest.h>

#include <string>

#include "i2z/error.hpp"
#include "zarr/shard_index.hpp"

namespace i2z {
namespace {

using Bytes = std::vector<std::uint8_t>;
constexpr auto E = ChunkLocation::kEmpty;

Bytes from_hex(std::string_view h) {
  Bytes out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2)
    out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
  return out;
}

Bytes tail(const Bytes& b, std::size_t n) { return Bytes(b.end() - static_cast<std::ptrdiff_t>(n), b.end()); }

std::vector<ChunkLocation> locs(std::initializer_list<std::pair<std::uint64_t, std::uint64_t>> l) {
  std::vector<ChunkLocation> out;
  for (auto [o, n] : l) out.push_back({o, n});
  return out;
}

void expect_same(const std::vector<ChunkLocation>& a, const std::vector<ChunkLocation>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].offset, b[i].offset) << i;
    EXPECT_EQ(a[i].nbytes, b[i].nbytes) << i;
  }
}

template <class F>
void expect_corrupt(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no i2z::Error thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Corrupt) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// Shards `c/0/0` written by zarr-python 3.1.6 for the §8.1 array (uint8 [4,4] = 0..15, shard
// [4,4], inner [2,2], compressors=None); inner chunks in Morton order:
//   a = zarr.create_array(MemoryStore(), shape=(4,4), chunks=(2,2), shards=(4,4), dtype="uint8",
//                         compressors=None, fill_value=0); a[:] = np.arange(16).reshape(4,4)
// then the same with shards={"shape":(4,4),"index_location":"start"}, and with a[0:2,2:4] = 0.
const char* kMortonEnd =
    "0001040508090c0d020306070a0b0e0f"
    "00000000000000000400000000000000" "08000000000000000400000000000000"
    "04000000000000000400000000000000" "0c000000000000000400000000000000" "adf3c793";
const char* kMortonStart =
    "44000000000000000400000000000000" "4c000000000000000400000000000000"
    "48000000000000000400000000000000" "50000000000000000400000000000000" "2b867805"
    "0001040508090c0d020306070a0b0e0f";
const char* kOneEmpty =
    "0001040508090c0d0a0b0e0f"
    "00000000000000000400000000000000" "ffffffffffffffffffffffffffffffff"
    "04000000000000000400000000000000" "08000000000000000400000000000000" "33ee612e";

TEST(ShardIndex, SizeFormula) {
  EXPECT_EQ(shard_index_size(4), 68u);
  EXPECT_EQ(shard_index_size(0), 4u);
}

TEST(ShardIndex, COrderLayout) {
  const auto entries = locs({{0, 4}, {4, 4}, {8, 4}, {12, 4}});
  const Bytes idx = encode_shard_index(entries);
  ASSERT_EQ(idx.size(), 68u);
  EXPECT_EQ(tail(idx, 4), (Bytes{0x18, 0xdc, 0x6a, 0x1c}));
  EXPECT_EQ(Bytes(idx.begin() + 16, idx.begin() + 24), (Bytes{4, 0, 0, 0, 0, 0, 0, 0}));
  expect_same(decode_shard_index(idx, 4, 84), entries);
}

TEST(ShardIndex, MortonLayoutMatchesZarrPython) {
  const Bytes shard = from_hex(kMortonEnd);
  ASSERT_EQ(shard.size(), 84u);
  const auto entries = locs({{0, 4}, {8, 4}, {4, 4}, {12, 4}});
  EXPECT_EQ(encode_shard_index(entries), tail(shard, 68));
  expect_same(decode_shard_index(tail(shard, 68), 4, shard.size()), entries);
}

TEST(ShardIndex, IndexAtStartMatchesZarrPython) {
  const Bytes shard = from_hex(kMortonStart);
  ASSERT_EQ(shard.size(), 84u);
  const auto entries = locs({{68, 4}, {76, 4}, {72, 4}, {80, 4}});
  const Bytes head(shard.begin(), shard.begin() + 68);
  EXPECT_EQ(encode_shard_index(entries), head);
  EXPECT_EQ(tail(head, 4), (Bytes{0x2b, 0x86, 0x78, 0x05}));
  expect_same(decode_shard_index(head, 4, shard.size()), entries);
}

TEST(ShardIndex, EmptyChunkMatchesZarrPython) {
  const Bytes shard = from_hex(kOneEmpty);
  ASSERT_EQ(shard.size(), 80u);
  const auto entries = locs({{0, 4}, {E, E}, {4, 4}, {8, 4}});
  EXPECT_EQ(encode_shard_index(entries), tail(shard, 68));
  const auto got = decode_shard_index(tail(shard, 68), 4, shard.size());
  expect_same(got, entries);
  EXPECT_TRUE(got[1].empty());
  EXPECT_FALSE(got[0].empty());
  EXPECT_TRUE(ChunkLocation{}.empty());
}

TEST(ShardIndex, AllEmptyAndZeroChunks) {
  const std::vector<ChunkLocation> empty(3);
  const Bytes idx = encode_shard_index(empty);
  expect_same(decode_shard_index(idx, 3, 52), empty);
  expect_same(decode_shard_index(idx, 3, 0), empty);
  const Bytes none = encode_shard_index({});
  EXPECT_EQ(none, (Bytes{0, 0, 0, 0}));  // CRC-32C of nothing
  EXPECT_TRUE(decode_shard_index(none, 0, 0).empty());
}

TEST(ShardIndex, ChecksumMismatch) {
  for (std::size_t pos : {0, 17, 63, 64, 67}) {
    Bytes idx = tail(from_hex(kMortonEnd), 68);
    idx[pos] ^= 0x40;
    expect_corrupt([&] { decode_shard_index(idx, 4, 84); }, "shard index checksum mismatch");
  }
}

TEST(ShardIndex, WrongSize) {
  const Bytes idx = tail(from_hex(kMortonEnd), 68);
  expect_corrupt([&] { decode_shard_index(Bytes(idx.begin() + 1, idx.end()), 4, 84); }, "67 bytes");
  expect_corrupt([&] { decode_shard_index(idx, 5, 84); }, "cannot hold 5");
  expect_corrupt([&] { decode_shard_index(Bytes(72), 4, 84); }, "expected 68");
  expect_corrupt([&] { decode_shard_index({}, 4, 84); }, "0 bytes");
  expect_corrupt([&] { decode_shard_index(idx, std::uint64_t{1} << 62, 0); }, "inner chunks");
}

TEST(ShardIndex, OutOfRangeEntries) {
  // Valid CRC, but the entry points past the object end.
  const Bytes idx = encode_shard_index(locs({{0, 4}, {8, 4}, {4, 4}, {12, 5}}));
  expect_corrupt([&] { decode_shard_index(idx, 4, 16); }, "entry 3");
  EXPECT_NO_THROW(decode_shard_index(idx, 4, 17));
  EXPECT_NO_THROW(decode_shard_index(idx, 4, 0));  // unchecked
  // offset + nbytes would overflow 64 bits
  expect_corrupt([&] { decode_shard_index(encode_shard_index(locs({{8, E - 4}})), 1, 100); }, "entry 0");
  expect_corrupt([&] { decode_shard_index(encode_shard_index(locs({{200, 0}})), 1, 100); }, "entry 0");
  // Half-empty entries are corrupt even without a size check.
  expect_corrupt([&] { decode_shard_index(encode_shard_index(locs({{E, 4}})), 1, 0); }, "half empty");
  expect_corrupt([&] { decode_shard_index(encode_shard_index(locs({{0, 4}, {4, E}})), 2, 0); }, "entry 1");
}

}  // namespace
}  // namespace i2z
