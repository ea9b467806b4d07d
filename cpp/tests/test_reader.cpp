// ArrayReader: stores built here byte by byte (encode_shard_index + CodecChain), read back and
// compared with the source array; the format note's known shard bytes; damaged stores; request
// counts (only the index and the needed chunks are fetched); concurrent readers.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>

#include "codecs/codec.hpp"
#include "i2z/error.hpp"
#include "i2z/reader.hpp"
#include "zarr/metadata.hpp"
#include "zarr/shard_index.hpp"

namespace i2z {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

Bytes from_hex(std::string_view h) {
  Bytes out;
  for (std::size_t i = 0; i < h.size();) {
    if (h[i] == ' ') {
      ++i;
      continue;
    }
    out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
    i += 2;
  }
  return out;
}

std::span<const std::uint8_t> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
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

// Forwards to a store and counts requests and bytes returned.
class CountingStore final : public Store {
 public:
  explicit CountingStore(std::shared_ptr<Store> inner) : inner_(std::move(inner)) {}
  std::atomic<int> gets{0}, ranges{0}, suffixes{0};
  std::atomic<std::uint64_t> bytes{0};

  std::optional<Bytes> get(const std::string& k) override { return count(gets, inner_->get(k)); }
  std::optional<Bytes> get_range(const std::string& k, std::uint64_t o, std::uint64_t n) override {
    return count(ranges, inner_->get_range(k, o, n));
  }
  std::optional<Bytes> get_suffix(const std::string& k, std::uint64_t n) override {
    return count(suffixes, inner_->get_suffix(k, n));
  }
  std::optional<std::uint64_t> size(const std::string& k) override { return inner_->size(k); }
  void set(const std::string& k, std::span<const std::uint8_t> d) override { inner_->set(k, d); }
  std::unique_ptr<ObjectWriter> open_writer(const std::string& k) override { return inner_->open_writer(k); }
  void erase(const std::string& k) override { inner_->erase(k); }
  std::vector<std::string> list(const std::string& p) override { return inner_->list(p); }
  std::string describe() const override { return inner_->describe(); }
  void reset() {
    gets = ranges = suffixes = 0;
    bytes = 0;
  }

 private:
  std::optional<Bytes> count(std::atomic<int>& c, std::optional<Bytes> b) {
    ++c;
    if (b) bytes += b->size();
    return b;
  }
  std::shared_ptr<Store> inner_;
};

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> n{0};
    path_ = fs::temp_directory_path() /
            ("i2z-reader-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string str() const { return path_.string(); }
  fs::path path() const { return path_; }

 private:
  fs::path path_;
};

// ---- a small reference writer (independent of the engine's) --------------------------------------

struct Layout {
  std::vector<std::uint64_t> shape, chunk, shard;  // shard empty = unsharded
  DType dtype = DType::u16;
  json codecs = json::array({{{"name", "bytes"}, {"configuration", {{"endian", "little"}}}}});
  bool index_at_end = true;
  double fill = 0;
  bool reverse_chunks = false;  // write inner chunks in reverse order, with a gap before each
  bool skip_fill_chunks = true;
};

std::uint64_t product(const std::vector<std::uint64_t>& v, std::size_t from = 0) {
  std::uint64_t p = 1;
  for (std::size_t i = from; i < v.size(); ++i) p *= v[i];
  return p;
}

std::uint64_t cdiv(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }

// Bytes of element `v` (as double) in `t`.
void put_value(DType t, double v, std::uint8_t* p) {
  auto put = [&](auto x) { std::memcpy(p, &x, sizeof(x)); };
  switch (t) {
    case DType::u8: return put(static_cast<std::uint8_t>(v));
    case DType::u16: return put(static_cast<std::uint16_t>(v));
    case DType::u32: return put(static_cast<std::uint32_t>(v));
    case DType::u64: return put(static_cast<std::uint64_t>(v));
    case DType::i8: return put(static_cast<std::int8_t>(v));
    case DType::i16: return put(static_cast<std::int16_t>(v));
    case DType::i32: return put(static_cast<std::int32_t>(v));
    case DType::i64: return put(static_cast<std::int64_t>(v));
    case DType::f32: return put(static_cast<float>(v));
    case DType::f64: return put(v);
  }
}

// Smooth content plus noise, in range for every dtype (0..100 shifted to negatives for signed).
Bytes make_data(const Layout& l, unsigned seed = 1) {
  const std::size_t ds = dtype_size(l.dtype), n = product(l.shape);
  std::mt19937 rng(seed);
  Bytes out(n * ds);
  for (std::size_t i = 0; i < n; ++i) {
    double v = 50 + 40 * std::sin(static_cast<double>(i) / 17.0) + static_cast<double>(rng() % 8);
    if (dtype_is_signed(l.dtype)) v -= 60;
    if (dtype_is_float(l.dtype)) v += 0.25;
    put_value(l.dtype, v, out.data() + i * ds);
  }
  return out;
}

// Raw bytes of the full chunk at grid coordinates q, padded with the fill value; `all_fill` set
// when no element lies inside the array or every one equals the fill.
Bytes chunk_bytes(const Layout& l, const Bytes& data, const std::vector<std::uint64_t>& q, bool& all_fill) {
  const std::size_t r = l.shape.size(), ds = dtype_size(l.dtype), n = product(l.chunk);
  Bytes fillv(ds), out(n * ds);
  put_value(l.dtype, l.fill, fillv.data());
  all_fill = true;
  std::vector<std::uint64_t> c(r, 0);
  for (std::size_t e = 0; e < n; ++e) {
    std::uint64_t rem = e, lin = 0;
    bool inside = true;
    for (std::size_t d = r; d-- > 0;) {
      c[d] = rem % l.chunk[d];
      rem /= l.chunk[d];
    }
    for (std::size_t d = 0; d < r; ++d) {
      const std::uint64_t a = q[d] * l.chunk[d] + c[d];
      if (a >= l.shape[d]) inside = false;
      lin = lin * l.shape[d] + a;
    }
    const std::uint8_t* src = inside ? data.data() + lin * ds : fillv.data();
    std::memcpy(out.data() + e * ds, src, ds);
    if (std::memcmp(src, fillv.data(), ds) != 0) all_fill = false;
  }
  return out;
}

std::vector<std::uint64_t> unravel(std::uint64_t i, const std::vector<std::uint64_t>& dims) {
  std::vector<std::uint64_t> c(dims.size());
  for (std::size_t d = dims.size(); d-- > 0;) {
    c[d] = i % dims[d];
    i /= dims[d];
  }
  return c;
}

void write_array(Store& store, const std::string& prefix, const Layout& l, const Bytes& data) {
  const std::size_t r = l.shape.size(), ds = dtype_size(l.dtype);
  ArrayMeta m;
  m.shape = l.shape;
  m.dtype = l.dtype;
  m.sharded = !l.shard.empty();
  m.chunk_grid = m.sharded ? l.shard : l.chunk;
  m.inner_chunk = m.sharded ? l.chunk : std::vector<std::uint64_t>{};
  m.index_at_end = l.index_at_end;
  m.fill_value = l.fill;
  m.chain = std::make_shared<CodecChain>(CodecChain::from_json(l.codecs, ds));
  m.attributes = {{"name", "test"}};
  const std::string doc = dump_json(array_meta_to_json(m));
  store.set(prefix + "zarr.json", as_bytes(doc));
  Bytes enc, scratch;
  if (!m.sharded) {
    std::vector<std::uint64_t> grid(r);
    for (std::size_t d = 0; d < r; ++d) grid[d] = cdiv(l.shape[d], l.chunk[d]);
    for (std::uint64_t i = 0; i < product(grid); ++i) {
      const auto q = unravel(i, grid);
      bool all_fill;
      const Bytes raw = chunk_bytes(l, data, q, all_fill);
      if (all_fill && l.skip_fill_chunks) continue;
      m.chain->encode(raw, enc, scratch);
      store.set(chunk_key(prefix, q), enc);
    }
    return;
  }
  std::vector<std::uint64_t> sgrid(r), cps(r);
  for (std::size_t d = 0; d < r; ++d) {
    sgrid[d] = cdiv(l.shape[d], l.shard[d]);
    cps[d] = l.shard[d] / l.chunk[d];
  }
  const std::uint64_t n_inner = product(cps);
  for (std::uint64_t s = 0; s < product(sgrid); ++s) {
    const auto sc = unravel(s, sgrid);
    std::vector<ChunkLocation> index(n_inner);
    Bytes body;
    for (std::uint64_t k = 0; k < n_inner; ++k) {
      const std::uint64_t inner = l.reverse_chunks ? n_inner - 1 - k : k;
      const auto ic = unravel(inner, cps);
      std::vector<std::uint64_t> q(r);
      bool outside = false;
      for (std::size_t d = 0; d < r; ++d) {
        q[d] = sc[d] * cps[d] + ic[d];
        if (q[d] * l.chunk[d] >= l.shape[d]) outside = true;
      }
      if (outside) continue;
      bool all_fill;
      const Bytes raw = chunk_bytes(l, data, q, all_fill);
      if (all_fill && l.skip_fill_chunks) continue;
      m.chain->encode(raw, enc, scratch);
      if (l.reverse_chunks) body.insert(body.end(), 3, 0xAB);  // a gap: readers must use the offsets
      index[inner] = ChunkLocation{body.size(), enc.size()};
      body.insert(body.end(), enc.begin(), enc.end());
    }
    if (std::all_of(index.begin(), index.end(), [](const ChunkLocation& e) { return e.empty(); })) continue;
    if (!l.index_at_end)
      for (auto& e : index)
        if (!e.empty()) e.offset += shard_index_size(n_inner);
    const Bytes ib = encode_shard_index(index);
    Bytes obj;
    if (l.index_at_end) {
      obj = body;
      obj.insert(obj.end(), ib.begin(), ib.end());
    } else {
      obj = ib;
      obj.insert(obj.end(), body.begin(), body.end());
    }
    store.set(chunk_key(prefix, sc), obj);
  }
}

// Expected bytes of items `idx` along axis 0.
Bytes expected_items(const Layout& l, const Bytes& data, const std::vector<std::uint64_t>& idx) {
  const std::size_t item = product(l.shape, 1) * dtype_size(l.dtype);
  Bytes out;
  for (auto i : idx) out.insert(out.end(), data.begin() + i * item, data.begin() + (i + 1) * item);
  return out;
}

// ---- the format note's known shards (§8.1) ------------------------------------------------------

const char* kMeta4x4(const char* loc) {
  static std::string s;
  s = std::string(R"({"zarr_format": 3, "node_type": "array", "shape": [4, 4], "data_type": "uint8",
    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4, 4]}},
    "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
    "fill_value": 0,
    "codecs": [{"name": "sharding_indexed", "configuration": {"chunk_shape": [2, 2],
      "codecs": [{"name": "bytes"}],
      "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
      "index_location": ")") + loc + R"("}}], "attributes": {}, "storage_transformers": []})";
  return s.c_str();
}

Bytes read_all(const ArrayReader& r) {
  Bytes out(r.length() * r.item_bytes());
  r.read_range(0, r.length(), out.data());
  return out;
}

// Little-endian uint64 hex of each value; ~0 for "empty".
std::string le64_hex(std::initializer_list<std::uint64_t> vals) {
  std::string out;
  char buf[4];
  for (auto v : vals)
    for (int i = 0; i < 8; ++i) {
      std::snprintf(buf, sizeof buf, "%02x ", static_cast<unsigned>((v >> (8 * i)) & 0xFF));
      out += buf;
    }
  return out;
}

TEST(ReaderKnownBytes, FormatNoteShards) {
  struct Case {
    const char* loc;
    std::string hex;
    Bytes expected;
  };
  Bytes iota(16);
  for (int i = 0; i < 16; ++i) iota[i] = static_cast<std::uint8_t>(i);
  Bytes hole = iota;
  for (int i : {2, 3, 6, 7}) hole[i] = 0;
  const std::uint64_t E = ~std::uint64_t{0};
  const std::string morton = "00 01 04 05 08 09 0c 0d 02 03 06 07 0a 0b 0e 0f ";
  const std::vector<Case> cases = {
      {"end", morton + le64_hex({0, 4, 8, 4, 4, 4, 12, 4}) + "ad f3 c7 93", iota},
      {"end", "00 01 04 05 08 09 0c 0d 0a 0b 0e 0f " + le64_hex({0, 4, E, E, 4, 4, 8, 4}) + "33 ee 61 2e", hole},
      {"start", le64_hex({0x44, 4, 0x4c, 4, 0x48, 4, 0x50, 4}) + "2b 86 78 05 " + morton, iota},
  };
  for (const auto& c : cases) {
    TempDir dir;
    auto store = open_local_store(dir.str());
    const std::string meta = kMeta4x4(c.loc);
    store->set("zarr.json", as_bytes(meta));
    const Bytes shard = from_hex(c.hex);
    ASSERT_EQ(shard.size(), c.expected == hole ? 80u : 84u) << c.hex;
    store->set("c/0/0", shard);
    auto r = open_image_array(store);
    EXPECT_EQ(r->shape(), (std::vector<std::uint64_t>{4, 4}));
    EXPECT_EQ(read_all(*r), c.expected) << c.loc;
    // Rows in any order, with repeats.
    const std::vector<std::uint64_t> idx{3, 0, 3, 1};
    Bytes out(4 * 4);
    r->read(idx, out.data());
    for (std::size_t k = 0; k < idx.size(); ++k)
      EXPECT_TRUE(std::equal(out.begin() + 4 * k, out.begin() + 4 * k + 4, c.expected.begin() + 4 * idx[k]));
  }
}

// ---- round trips over layouts, dtypes and codecs ---------------------------------------------------

struct RoundTripCase {
  std::string name;
  Layout layout;
};

json bytes_codec(const char* endian = "little") {
  return {{"name", "bytes"}, {"configuration", {{"endian", endian}}}};
}

std::vector<RoundTripCase> round_trip_cases() {
  std::vector<RoundTripCase> out;
  const std::vector<std::pair<std::string, json>> chains = {
      {"raw", json::array({bytes_codec()})},
      {"big", json::array({bytes_codec("big")})},
      {"blosc", json::array({bytes_codec(), {{"name", "blosc"},
                                             {"configuration",
                                              {{"typesize", 2}, {"cname", "lz4"}, {"clevel", 5}, {"shuffle", "shuffle"},
                                               {"blocksize", 0}}}}})},
      {"zstd", json::array({bytes_codec(), {{"name", "zstd"}, {"configuration", {{"level", 3}, {"checksum", true}}}}})},
      {"gzip", json::array({bytes_codec(), {{"name", "gzip"}, {"configuration", {{"level", 5}}}}})},
      {"crc", json::array({bytes_codec(), "crc32c"})},
  };
  const std::vector<DType> dtypes = {DType::u8, DType::u16, DType::u32, DType::u64, DType::i8,
                                     DType::i16, DType::i32, DType::i64, DType::f32, DType::f64};
  for (DType t : dtypes) {
    for (const auto& [cname, chain] : chains) {
      // Sharded, index at the end, shape not a multiple of the shard or the chunk.
      Layout a;
      a.shape = {11, 3, 13, 10};
      a.chunk = {2, 3, 5, 4};
      a.shard = {4, 3, 10, 8};
      a.dtype = t;
      a.codecs = chain;
      out.push_back({std::string(dtype_name(t)) + "_" + cname + "_end", a});
    }
    Layout b;  // index at the start, chunks in reverse order with gaps
    b.shape = {9, 2, 7, 6};
    b.chunk = {3, 1, 4, 3};
    b.shard = {6, 2, 8, 6};
    b.dtype = t;
    b.index_at_end = false;
    b.reverse_chunks = true;
    b.codecs = chains[3].second;
    out.push_back({std::string(dtype_name(t)) + "_start_reversed", b});
    Layout c;  // unsharded, edge chunks, non-zero fill
    c.shape = {7, 1, 9, 5};
    c.chunk = {2, 1, 4, 5};
    c.dtype = t;
    c.fill = 3;
    c.codecs = chains[2].second;
    out.push_back({std::string(dtype_name(t)) + "_unsharded", c});
  }
  Layout whole;  // a whole image per chunk (the engine's default layout): the contiguous path
  whole.shape = {10, 3, 16, 16};
  whole.chunk = {1, 3, 16, 16};
  whole.shard = {4, 3, 16, 16};
  whole.codecs = chains[2].second;
  out.push_back({"whole_images", whole});
  Layout rank1;
  rank1.shape = {100};
  rank1.chunk = {7};
  rank1.shard = {21};
  out.push_back({"rank1", rank1});
  Layout rank3;
  rank3.shape = {5, 6, 7};
  rank3.chunk = {2, 3, 7};
  rank3.shard = {4, 6, 7};
  rank3.dtype = DType::f32;
  out.push_back({"rank3", rank3});
  Layout dense;  // every chunk stored, also the all-fill ones
  dense.shape = {5, 1, 4, 4};
  dense.chunk = {1, 1, 2, 2};
  dense.shard = {2, 1, 4, 4};
  dense.skip_fill_chunks = false;
  out.push_back({"dense", dense});
  return out;
}

class ReaderRoundTrip : public ::testing::TestWithParam<RoundTripCase> {};

TEST_P(ReaderRoundTrip, MatchesSource) {
  Layout l = GetParam().layout;
  TempDir dir;
  auto store = open_local_store(dir.str());
  const std::string group = dump_json(group_json({{"total_images", l.shape[0]}}));
  store->set("zarr.json", as_bytes(group));
  Bytes data = make_data(l);
  // Leave holes: item 1 all fill value (its chunks are skipped by the writer where possible).
  const std::size_t item = product(l.shape, 1) * dtype_size(l.dtype);
  for (std::size_t i = 0; i < item; i += dtype_size(l.dtype)) put_value(l.dtype, l.fill, data.data() + item + i);
  write_array(*store, "images/", l, data);

  for (unsigned threads : {1u, 3u}) {
    ReaderOptions o;
    o.threads = threads;
    auto r = open_image_array(store, o);
    ASSERT_EQ(r->shape(), l.shape);
    ASSERT_EQ(r->dtype(), l.dtype);
    ASSERT_EQ(r->item_bytes(), item);
    EXPECT_EQ(json::parse(r->attributes_json()), json({{"name", "test"}}));
    EXPECT_EQ(read_all(*r), data);
    const std::uint64_t n = l.shape[0];
    std::vector<std::vector<std::uint64_t>> lists = {{0}, {n - 1}, {n - 1, 0, 1, 1, n / 2, 0}, {}};
    std::mt19937 rng(7);
    std::vector<std::uint64_t> rnd(3 * n);
    for (auto& v : rnd) v = rng() % n;
    lists.push_back(rnd);
    for (const auto& idx : lists) {
      Bytes out(idx.size() * item + 1, 0xEE);
      r->read(idx, out.data());
      EXPECT_EQ(out.back(), 0xEE) << "wrote past the buffer";
      out.pop_back();
      EXPECT_EQ(out, expected_items(l, data, idx));
    }
    for (std::uint64_t a = 0; a <= n; a += 3)
      for (std::uint64_t b = a; b <= n; b += 2) {
        Bytes out((b - a) * item);
        r->read_range(a, b, out.data());
        std::vector<std::uint64_t> idx;
        for (auto i = a; i < b; ++i) idx.push_back(i);
        ASSERT_EQ(out, expected_items(l, data, idx)) << a << ".." << b;
      }
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, ReaderRoundTrip, ::testing::ValuesIn(round_trip_cases()),
                         [](const auto& info) { return info.param.name; });

// ---- fill values, missing objects ----------------------------------------------------------------

TEST(Reader, MissingShardsAndChunksReadAsFill) {
  for (bool sharded : {true, false}) {
    TempDir dir;
    auto store = open_local_store(dir.str());
    Layout l;
    l.shape = {8, 1, 4, 4};
    l.chunk = {2, 1, 4, 4};
    if (sharded) l.shard = {4, 1, 4, 4};
    l.dtype = DType::f32;
    l.fill = -1.5;
    write_array(*store, "", l, make_data(l));
    // Remove the second shard / chunk objects: items 4..7 (sharded) or 2..3 (unsharded).
    for (const auto& k : store->list("c"))
      if (k.rfind("c/1/", 0) == 0) store->erase(k);
    auto r = open_image_array(store);
    std::vector<float> out(8 * 16);
    r->read_range(0, 8, out.data());
    const std::uint64_t lo = sharded ? 4 : 2, hi = sharded ? 8 : 4;
    for (std::uint64_t i = 0; i < 8; ++i)
      for (int e = 0; e < 16; ++e) {
        if (i >= lo && i < hi) EXPECT_EQ(out[i * 16 + e], -1.5f) << i;
        else EXPECT_NE(out[i * 16 + e], -1.5f) << i;
      }
  }
}

TEST(Reader, EmptyArrayAndEmptyRequests) {
  TempDir dir;
  auto store = open_local_store(dir.str());
  Layout l;
  l.shape = {0, 3, 4, 4};
  l.chunk = {1, 3, 4, 4};
  l.shard = {8, 3, 4, 4};
  write_array(*store, "", l, {});
  auto r = open_image_array(store);
  EXPECT_EQ(r->length(), 0u);
  r->read_range(0, 0, nullptr);
  r->read({}, nullptr);
  expect_error([&] { r->read_range(0, 1, nullptr); }, ErrorKind::Index, "out of range");
}

// ---- errors ------------------------------------------------------------------------------------

class ReaderErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = open_local_store(dir_.str());
    l_.shape = {12, 2, 6, 6};
    l_.chunk = {2, 2, 6, 6};
    l_.shard = {4, 2, 6, 6};
    l_.codecs = json::array({bytes_codec(), {{"name", "zstd"}, {"configuration", {{"level", 1}}}}});
    const std::string g = dump_json(group_json(json::object()));
    store_->set("zarr.json", as_bytes(g));
    data_ = make_data(l_);
    write_array(*store_, "images/", l_, data_);
  }
  std::unique_ptr<ArrayReader> open() { return open_image_array(store_); }
  std::size_t r_bytes() const { return product(l_.shape, 1) * dtype_size(l_.dtype); }
  Bytes shard(const std::string& key) { return *store_->get(key); }

  TempDir dir_;
  std::shared_ptr<Store> store_;
  Layout l_;
  Bytes data_;
};

TEST_F(ReaderErrors, IndexOutOfRange) {
  auto r = open();
  Bytes out(3 * r->item_bytes(), 0x5A);
  const std::vector<std::uint64_t> idx{0, 12, 1};
  expect_error([&] { r->read(idx, out.data()); }, ErrorKind::Index, "index 12 is out of range");
  EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](auto b) { return b == 0x5A; })) << "buffer touched";
  expect_error([&] { r->read_range(5, 13, out.data()); }, ErrorKind::Index, "out of range");
  expect_error([&] { r->read_range(6, 5, out.data()); }, ErrorKind::Index);
  const std::vector<std::uint64_t> huge{~std::uint64_t{0}};
  expect_error([&] { r->read(huge, out.data()); }, ErrorKind::Index);
}

TEST_F(ReaderErrors, IndexChecksumMismatchNamesTheShard) {
  Bytes s = shard("images/c/1/0/0/0");
  s[s.size() - 10] ^= 0x01;  // inside the index
  store_->set("images/c/1/0/0/0", s);
  auto r = open();
  Bytes out(r->item_bytes());
  const std::vector<std::uint64_t> ok{0}, bad{5};
  r->read(ok, out.data());  // other shards stay readable
  expect_error([&] { r->read(bad, out.data()); }, ErrorKind::Corrupt, "images/c/1/0/0/0: shard index checksum mismatch");
}

TEST_F(ReaderErrors, TruncatedShard) {
  Bytes s = shard("images/c/0/0/0/0");
  s.resize(s.size() / 2);
  store_->set("images/c/0/0/0/0", s);
  Bytes out(r_bytes());
  expect_error([&] { open()->read_range(0, 4, out.data()); }, ErrorKind::Corrupt, "images/c/0/0/0/0");
  s.resize(10);  // shorter than the index
  store_->set("images/c/0/0/0/0", s);
  expect_error([&] { open()->read_range(0, 4, out.data()); }, ErrorKind::Corrupt, "images/c/0/0/0/0");
}

TEST_F(ReaderErrors, TruncatedShardWithIndexAtStart) {
  l_.index_at_end = false;
  write_array(*store_, "images/", l_, data_);
  Bytes s = shard("images/c/2/0/0/0");
  s.resize(s.size() - 7);
  store_->set("images/c/2/0/0/0", s);
  auto r = open();
  Bytes out(4 * r->item_bytes());
  r->read_range(0, 2, out.data());  // first chunk of the shard is intact
  expect_error([&] { r->read_range(8, 12, out.data()); }, ErrorKind::Corrupt, "images/c/2/0/0/0: truncated shard");
}

TEST_F(ReaderErrors, IndexEntryBeyondTheObjectOrChunkOfWrongSize) {
  const std::string key = "images/c/1/0/0/0";
  const Bytes s = shard(key);
  const std::uint64_t n = 2;
  auto locs = decode_shard_index(std::span(s).subspan(s.size() - shard_index_size(n)), n, s.size());
  auto rewrite = [&](std::vector<ChunkLocation> l) {
    Bytes body(s.begin(), s.end() - static_cast<std::ptrdiff_t>(shard_index_size(n)));
    const Bytes ib = encode_shard_index(l);
    body.insert(body.end(), ib.begin(), ib.end());
    store_->set(key, body);
  };
  Bytes out(4 * r_bytes());
  auto beyond = locs;
  beyond[1].offset = 1 << 20;
  rewrite(beyond);
  expect_error([&] { open()->read_range(4, 8, out.data()); }, ErrorKind::Corrupt, key + ": truncated shard");
  auto huge = locs;
  huge[0] = ChunkLocation{~std::uint64_t{0} - 5, 100};
  rewrite(huge);
  expect_error([&] { open()->read_range(4, 8, out.data()); }, ErrorKind::Corrupt, key);
  auto half = locs;
  half[0].nbytes = ChunkLocation::kEmpty;
  rewrite(half);
  expect_error([&] { open()->read_range(4, 8, out.data()); }, ErrorKind::Corrupt, "half empty");
  auto shorter = locs;  // a valid zstd frame cut short
  shorter[0].nbytes -= 3;
  rewrite(shorter);
  expect_error([&] { open()->read_range(4, 6, out.data()); }, ErrorKind::Corrupt, key + " (inner chunk [0, 0, 0, 0])");
  auto swapped = locs;  // each chunk decodes fine but the first is pointed at garbage bytes
  swapped[0].offset += 1;
  rewrite(swapped);
  expect_error([&] { open()->read_range(4, 6, out.data()); }, ErrorKind::Corrupt, key);
}

TEST_F(ReaderErrors, UncompressedChunkOfWrongSize) {
  l_.codecs = json::array({bytes_codec()});
  l_.shard.clear();
  write_array(*store_, "images/", l_, data_);
  Bytes c = *store_->get("images/c/1/0/0/0");
  c.pop_back();
  store_->set("images/c/1/0/0/0", c);
  Bytes out(r_bytes());
  const std::vector<std::uint64_t> idx{2};
  expect_error([&] { open()->read(idx, out.data()); }, ErrorKind::Corrupt, "images/c/1/0/0/0: chunk is 287 bytes");
}

TEST_F(ReaderErrors, GarbageChunkNeverCrashes) {
  // Overwrite every byte of the chunk area with noise; any outcome but a crash or wrong-size
  // success is a failure.
  const std::string key = "images/c/0/0/0/0";
  Bytes s = shard(key);
  std::mt19937 rng(3);
  for (int round = 0; round < 50; ++round) {
    Bytes t = s;
    for (std::size_t i = 0; i + shard_index_size(2) < t.size(); ++i)
      if (rng() % 4 == 0) t[i] = static_cast<std::uint8_t>(rng());
    store_->set(key, t);
    Bytes out(4 * r_bytes());
    try {
      open()->read_range(0, 4, out.data());
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Corrupt) << e.what();
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  }
}

TEST(ReaderOpen, Errors) {
  TempDir dir;
  auto store = open_local_store(dir.str());
  expect_error([&] { open_image_array(store); }, ErrorKind::FileNotFound, "zarr.json is missing");
  const std::string g = dump_json(group_json({{"a", 1}}));
  store->set("zarr.json", as_bytes(g));
  expect_error([&] { open_image_array(store); }, ErrorKind::Value, "no \"images\" array");
  EXPECT_EQ(json::parse(group_attributes_json(*store)), json({{"a", 1}}));
  const std::string bad = "{\"zarr_format\": 2}";
  store->set("zarr.json", as_bytes(bad));
  expect_error([&] { open_image_array(store); }, ErrorKind::Value, "zarr_format");
  const std::string garbage = "{not json";
  store->set("zarr.json", as_bytes(garbage));
  expect_error([&] { open_image_array(store); }, ErrorKind::Value, "JSON");
  expect_error([&] { ArrayReader(store, "images/"); }, ErrorKind::FileNotFound, "images/zarr.json is missing");
  // Metadata problems are Value errors naming the document.
  const std::string rank0 = R"({"zarr_format": 3, "node_type": "array", "shape": [], "data_type": "uint8",
    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": []}}, "fill_value": 0,
    "codecs": [{"name": "bytes"}]})";
  store->set("zarr.json", as_bytes(rank0));
  expect_error([&] { open_image_array(store); }, ErrorKind::Value, "rank-0");
  const std::string typed = R"({"zarr_format": 3, "node_type": "array", "shape": [2], "data_type": "uint8",
    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": "x"}}, "fill_value": 0,
    "codecs": [{"name": "bytes"}]})";
  store->set("zarr.json", as_bytes(typed));
  expect_error([&] { open_image_array(store); }, ErrorKind::Value, "zarr.json");
}

// group_attributes_json: "{}" for a store without group attributes, a Value error naming the
// document for a damaged one (the reader.hpp contract).
TEST(ReaderOpen, GroupAttributesOfMissingArrayAndDamagedRoots) {
  TempDir dir;
  auto store = open_local_store(dir.str());
  EXPECT_EQ(group_attributes_json(*store), "{}");  // no zarr.json at all
  const std::string array_root = R"({"zarr_format": 3, "node_type": "array", "attributes": {"a": 1}})";
  store->set("zarr.json", as_bytes(array_root));
  EXPECT_EQ(group_attributes_json(*store), "{}");
  const std::string no_attrs = R"({"zarr_format": 3, "node_type": "group", "attributes": [1]})";
  store->set("zarr.json", as_bytes(no_attrs));
  EXPECT_EQ(group_attributes_json(*store), "{}");
  for (const std::string bad : {"{not json", "", "[]", "null", "{\"zarr_format\": 2, \"node_type\": \"group\"}"}) {
    store->set("zarr.json", as_bytes(bad));
    expect_error([&] { group_attributes_json(*store); }, ErrorKind::Value, "zarr.json");
  }
}

// Wrongly typed fields in an array document are Value errors naming the document, never a
// stray JSON-library exception.
TEST(ReaderOpen, WronglyTypedMetadataFields) {
  TempDir dir;
  auto store = open_local_store(dir.str());
  const json good = json::parse(R"({"zarr_format": 3, "node_type": "array", "shape": [4, 4], "data_type": "uint8",
    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4, 4]}},
    "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}}, "fill_value": 0,
    "codecs": [{"name": "sharding_indexed", "configuration": {"chunk_shape": [2, 2], "codecs": [{"name": "bytes"}],
      "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
      "index_location": "end"}}]})");
  store->set("zarr.json", as_bytes(good.dump()));
  EXPECT_EQ(open_image_array(store)->shape(), (std::vector<std::uint64_t>{4, 4}));
  const std::vector<std::pair<std::string, json>> edits = {
      {"/zarr_format", "3"},
      {"/node_type", 1},
      {"/data_type", "complex64"},
      {"/chunk_grid", "regular"},
      {"/chunk_grid/configuration", json::array()},
      {"/chunk_key_encoding", "default"},
      {"/chunk_key_encoding/configuration/separator", 0},
      {"/fill_value", "0xZZ"},
      {"/fill_value", json::array()},
      {"/codecs/0", "sharding_indexed"},
      {"/codecs/0/configuration", 5},
      {"/codecs/0/configuration/index_location", 1},
      {"/codecs/0/configuration/codecs", json::array({{{"name", "bytes"}, {"configuration", {{"endian", 1}}}}})},
      {"/codecs/0/configuration/index_codecs/0/configuration", "x"},
      {"/shape", json::array({-1, 4})},
  };
  for (const auto& [ptr, value] : edits) {
    json j = good;
    j[json::json_pointer(ptr)] = value;
    store->set("zarr.json", as_bytes(j.dump()));
    expect_error([&] { open_image_array(store); }, ErrorKind::Value, "zarr.json");
  }
}

TEST(ReaderOpen, BareNonFiniteTokensInAttributes) {
  TempDir dir;
  auto store = open_local_store(dir.str());
  const std::string g = R"({"zarr_format": 3, "node_type": "group", "attributes": {"lo": -Infinity, "x": NaN, "s": "NaN"}})";
  store->set("zarr.json", as_bytes(g));
  EXPECT_EQ(json::parse(group_attributes_json(*store)), json({{"lo", "-Infinity"}, {"x", "NaN"}, {"s", "NaN"}}));
  Layout l;
  l.shape = {3, 2};
  l.chunk = {1, 2};
  write_array(*store, "images/", l, make_data(l));
  Bytes doc = *store->get("images/zarr.json");
  std::string text(doc.begin(), doc.end());
  text.replace(text.find("\"name\": \"test\""), 14, "\"name\": NaN");
  store->set("images/zarr.json", as_bytes(text));
  auto r = open_image_array(store);
  EXPECT_EQ(json::parse(r->attributes_json()), json({{"name", "NaN"}}));
}

// ---- partial reads and the index cache -----------------------------------------------------------

TEST(ReaderRequests, FetchesOnlyTheIndexAndTheNeededChunks) {
  TempDir dir;
  auto local = open_local_store(dir.str());
  Layout l;
  l.shape = {64, 3, 16, 16};
  l.chunk = {1, 3, 16, 16};
  l.shard = {16, 3, 16, 16};
  l.dtype = DType::u8;
  write_array(*local, "", l, make_data(l));
  auto store = std::make_shared<CountingStore>(local);
  auto r = open_image_array(store);
  const std::uint64_t item = r->item_bytes(), index = shard_index_size(16);
  store->reset();
  Bytes out(64 * item);
  const std::vector<std::uint64_t> one{37};
  r->read(one, out.data());
  EXPECT_EQ(store->suffixes.load(), 1);  // the index of shard 2
  EXPECT_EQ(store->ranges.load(), 1);    // one inner chunk
  EXPECT_EQ(store->gets.load(), 0);
  EXPECT_EQ(store->bytes.load(), index + item);
  store->reset();
  const std::vector<std::uint64_t> again{38, 33};
  r->read(again, out.data());
  EXPECT_EQ(store->suffixes.load(), 0) << "index not cached";
  EXPECT_EQ(store->ranges.load(), 2);
  // A range inside one shard: its chunks are adjacent, so they come in one request.
  store->reset();
  r->read_range(16, 32, out.data());
  EXPECT_EQ(store->suffixes.load(), 1);
  EXPECT_EQ(store->ranges.load(), 1);
  EXPECT_EQ(store->bytes.load(), index + 16 * item);
  EXPECT_EQ(r->stats().index_reads, 2u);
  // The whole array: 3 more indexes, then one request per shard.
  store->reset();
  r->read_range(0, 64, out.data());
  EXPECT_EQ(store->suffixes.load(), 2);
  EXPECT_EQ(store->ranges.load(), 4);
}

TEST(ReaderRequests, BoundedIndexCacheStaysCorrect) {
  TempDir dir;
  auto local = open_local_store(dir.str());
  Layout l;
  l.shape = {40, 1, 4, 4};
  l.chunk = {1, 1, 4, 4};
  l.shard = {2, 1, 4, 4};
  l.codecs = json::array({bytes_codec(), "crc32c"});
  const Bytes data = make_data(l);
  write_array(*local, "", l, data);
  auto store = std::make_shared<CountingStore>(local);
  ReaderOptions o;
  o.index_cache_bytes = 1;  // keeps one entry
  o.threads = 1;  // index fetches in shard order, so which entry is cached last is deterministic
  auto r = open_image_array(store, o);
  std::vector<std::uint64_t> idx;
  for (int k = 0; k < 3; ++k)
    for (std::uint64_t i = 0; i < 40; i += 3) idx.push_back(i);
  Bytes out(idx.size() * r->item_bytes());
  r->read(idx, out.data());
  EXPECT_EQ(out, expected_items(l, data, idx));
  store->reset();
  const std::vector<std::uint64_t> a{0}, b{39};
  r->read(b, out.data());  // the last shard fetched in the big read is still cached
  EXPECT_EQ(store->suffixes.load(), 0);
  r->read(a, out.data());
  EXPECT_EQ(store->suffixes.load(), 1);
  r->read(b, out.data());
  EXPECT_EQ(store->suffixes.load(), 2);  // evicted by shard 0
}

// ---- concurrency ---------------------------------------------------------------------------------

TEST(ReaderThreads, ConcurrentReadsFromManyThreads) {
  TempDir dir;
  auto store = open_local_store(dir.str());
  Layout l;
  l.shape = {50, 2, 20, 20};
  l.chunk = {1, 2, 10, 10};
  l.shard = {5, 2, 20, 20};
  l.dtype = DType::i16;
  l.codecs = json::array({bytes_codec(), {{"name", "zstd"}, {"configuration", {{"level", 1}}}}});
  const Bytes data = make_data(l);
  write_array(*store, "", l, data);
  ReaderOptions o;
  o.threads = 4;
  o.index_cache_bytes = 600;  // evictions while racing
  auto r = open_image_array(store, o);
  std::atomic<int> failures{0};
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < 6; ++t)
    ts.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int it = 0; it < 40; ++it) {
        std::vector<std::uint64_t> idx(1 + rng() % 12);
        for (auto& v : idx) v = rng() % 50;
        Bytes out(idx.size() * r->item_bytes());
        if (it % 3 == 0) {
          const std::uint64_t a = rng() % 50, b = a + rng() % (51 - a);
          idx.clear();
          for (auto i = a; i < b; ++i) idx.push_back(i);
          out.resize(idx.size() * r->item_bytes());
          r->read_range(a, b, out.data());
        } else {
          r->read(idx, out.data());
        }
        if (out != expected_items(l, data, idx)) ++failures;
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(ReaderThreads, ErrorsInWorkersReachTheCaller) {
  TempDir dir;
  auto store = open_local_store(dir.str());
  Layout l;
  l.shape = {40, 1, 8, 8};
  l.chunk = {1, 1, 8, 8};
  l.shard = {4, 1, 8, 8};
  l.codecs = json::array({bytes_codec(), "crc32c"});
  write_array(*store, "", l, make_data(l));
  Bytes s = *store->get("c/7/0/0/0");
  s[5] ^= 0xFF;  // a chunk payload: its crc32c fails
  store->set("c/7/0/0/0", s);
  ReaderOptions o;
  o.threads = 4;
  auto r = open_image_array(store, o);
  Bytes out(40 * r->item_bytes());
  for (int k = 0; k < 5; ++k)
    expect_error([&] { r->read_range(0, 40, out.data()); }, ErrorKind::Corrupt, "c/7/0/0/0 (inner chunk [0, 0, 0, 0])");
  r->read_range(0, 28, out.data());  // still usable afterwards
}

}  // namespace
}  // namespace i2z
