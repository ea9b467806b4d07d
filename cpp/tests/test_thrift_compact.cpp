// Thrift compact codec used by the Parquet side-car append: hand-encoded bytes from the
// protocol's rules, round trips, and hostile input.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "i2z/error.hpp"
#include "sidecar/thrift_compact.hpp"

using namespace i2z::thrift;

namespace {

std::vector<std::uint8_t> B(std::initializer_list<int> v) {
  std::vector<std::uint8_t> out;
  for (int x : v) out.push_back(static_cast<std::uint8_t>(x));
  return out;
}

std::string S(const std::vector<std::uint8_t>& v) { return std::string(v.begin(), v.end()); }

}  // namespace

TEST(ThriftCompact, DecodesHandEncodedStruct) {
  // field 1 i32 = -3 (zigzag 5), field 3 i64 = 300 (zigzag 600 = 0xd8 0x04), field 20 binary "ab"
  // (delta 17 > 15: long form, zigzag id 40), field 21 bool true, field 22 list<i64> [1, 2],
  // field 23 struct { field 1 byte = -1 }, stop.
  const auto bytes = B({0x15, 0x05, 0x26, 0xd8, 0x04, 0x08, 0x28, 0x02, 'a', 'b', 0x11, 0x19, 0x26, 0x02, 0x04,
                        0x1c, 0x13, 0xff, 0x00, 0x00});
  const Value v = decode_struct(bytes);
  ASSERT_EQ(v.fields.size(), 6u);
  EXPECT_EQ(v.find(1)->value.type, CType::I32);
  EXPECT_EQ(v.find(1)->value.i, -3);
  EXPECT_EQ(v.find(3)->value.i, 300);
  EXPECT_EQ(v.find(20)->value.bin, "ab");
  EXPECT_EQ(v.find(21)->value.type, CType::True);
  const Value& list = v.find(22)->value;
  ASSERT_EQ(list.items.size(), 2u);
  EXPECT_EQ(list.items[0].i, 1);
  EXPECT_EQ(list.items[1].i, 2);
  EXPECT_EQ(v.find(23)->value.find(1)->value.i, -1);
  EXPECT_EQ(v.find(2), nullptr);
  EXPECT_EQ(encode_struct(v), S(bytes));
}

TEST(ThriftCompact, RoundTripsLongListsMapsBoolListsAndDoubles) {
  Value s;
  s.type = CType::Struct;
  Value list;
  list.type = CType::List;
  list.elem = CType::Binary;
  for (int k = 0; k < 40; ++k) {  // >= 15 elements: the size moves to a varint
    Value e;
    e.type = CType::Binary;
    e.bin = std::string(static_cast<std::size_t>(k), 'x');
    list.items.push_back(e);
  }
  s.fields.push_back({4, list});
  Value bools;
  bools.type = CType::List;
  bools.elem = CType::True;
  for (int raw : {1, 2, 0}) {  // writers differ on false; the raw byte survives
    Value e;
    e.type = CType::True;
    e.i = raw;
    bools.items.push_back(e);
  }
  s.fields.push_back({2, bools});  // ids need not increase: long-form header
  Value map;
  map.type = CType::Map;
  map.elem = CType::I32;
  map.elem2 = CType::Double;
  Value k1;
  k1.type = CType::I32;
  k1.i = -70000;
  Value d1;
  d1.type = CType::Double;
  d1.i = 0x400921fb54442d18;  // pi
  map.items = {k1, d1};
  s.fields.push_back({-5, map});
  Value f;
  f.type = CType::False;
  s.fields.push_back({300, f});
  const std::string enc = encode_struct(s);
  const auto bytes = std::vector<std::uint8_t>(enc.begin(), enc.end());
  const Value back = decode_struct(bytes);
  EXPECT_EQ(encode_struct(back), enc);
  ASSERT_EQ(back.fields.size(), 4u);
  EXPECT_EQ(back.find(4)->value.items.size(), 40u);
  EXPECT_EQ(back.find(4)->value.items[39].bin.size(), 39u);
  EXPECT_EQ(back.find(2)->value.items[1].i, 2);
  EXPECT_EQ(back.find(-5)->value.items[0].i, -70000);
  EXPECT_EQ(back.find(-5)->value.items[1].i, 0x400921fb54442d18);
  EXPECT_EQ(back.find(300)->value.type, CType::False);
}

TEST(ThriftCompact, RejectsHostileInput) {
  auto corrupt = [](const std::vector<std::uint8_t>& b) {
    try {
      decode_struct(b);
    } catch (const i2z::Error& e) {
      return e.kind() == i2z::ErrorKind::Corrupt;
    }
    return false;
  };
  EXPECT_TRUE(corrupt(B({})));                          // no stop byte
  EXPECT_TRUE(corrupt(B({0x15})));                      // value missing
  EXPECT_TRUE(corrupt(B({0x18, 0x7f, 'a', 0x00})));     // binary longer than the data
  EXPECT_TRUE(corrupt(B({0x19, 0xf6, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00})));  // list of 4G i64
  EXPECT_TRUE(corrupt(B({0x1d, 0x00})));                // unknown type 13
  EXPECT_TRUE(corrupt(B({0x15, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00})));
  EXPECT_TRUE(corrupt(B({0x15, 0x02, 0x00, 0x00})));    // trailing byte
  std::vector<std::uint8_t> deep(200, 0x1c);            // struct in struct in ... (no end)
  EXPECT_TRUE(corrupt(deep));
  std::vector<std::uint8_t> nested;  // 100 levels, properly closed: still too deep
  for (int k = 0; k < 100; ++k) nested.push_back(0x1c);
  for (int k = 0; k < 101; ++k) nested.push_back(0x00);
  EXPECT_TRUE(corrupt(nested));
}
