// A generic Thrift compact-protocol value tree: enough to read a Parquet FileMetaData (or
// OffsetIndex), change a few integer fields and write it back. Fields the caller does not touch,
// including ones this code has no name for, are kept with their ids, types and values, so a
// decode + encode of a canonically encoded struct gives back the same bytes.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace i2z::thrift {

// Compact-protocol type codes (the low nibble of a field header).
enum class CType : std::uint8_t {
  Stop = 0,
  True = 1,  // bool fields carry their value in the type code
  False = 2,
  Byte = 3,
  I16 = 4,
  I32 = 5,
  I64 = 6,
  Double = 7,
  Binary = 8,
  List = 9,
  Set = 10,
  Map = 11,
  Struct = 12,
};

struct Field;

struct Value {
  CType type = CType::Stop;
  // Byte, I16, I32, I64: the value; Double: the raw bits; a bool inside a list or map: the raw
  // byte (writers disagree on 0 or 2 for false). A bool struct field has no payload: its type
  // is True or False.
  std::int64_t i = 0;
  std::string bin;           // Binary
  CType elem = CType::Stop;  // List/Set element type, Map key type (bools: the code as written)
  CType elem2 = CType::Stop; // Map value type
  std::vector<Value> items;  // List/Set elements; Map: key, value, key, value, ...
  std::vector<Field> fields; // Struct fields in the order read (or set)

  // Struct helpers. find returns nullptr when the field is absent.
  Field* find(std::int16_t id);
  const Field* find(std::int16_t id) const;
};

struct Field {
  std::int16_t id = 0;
  Value value;
};

// Throws i2z::Error(Corrupt) on malformed or truncated input, on nesting deeper than 64 levels,
// and when bytes are left over after the top-level struct (the caller passes the exact extent).
Value decode_struct(std::span<const std::uint8_t> data);
// Decodes one struct from the front of data; *used receives the number of bytes read.
Value decode_struct_prefix(std::span<const std::uint8_t> data, std::size_t* used);
void encode_struct(const Value& v, std::string& out);
std::string encode_struct(const Value& v);

}  // namespace i2z::thrift
