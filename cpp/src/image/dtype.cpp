#include "i2z/dtype.hpp"

#include <array>
#include <string>

#include "i2z/error.hpp"

namespace i2z {

namespace {
struct Traits {
  std::string_view name;
  std::size_t size;
  bool is_float, is_signed;
  double lo, hi;
};
constexpr std::array<Traits, 10> kTraits{{
    {"uint8", 1, false, false, 0.0, 255.0},
    {"uint16", 2, false, false, 0.0, 65535.0},
    {"uint32", 4, false, false, 0.0, 4294967295.0},
    {"uint64", 8, false, false, 0.0, 18446744073709551615.0},
    {"int8", 1, false, true, -128.0, 127.0},
    {"int16", 2, false, true, -32768.0, 32767.0},
    {"int32", 4, false, true, -2147483648.0, 2147483647.0},
    {"int64", 8, false, true, -9223372036854775808.0, 9223372036854775807.0},
    {"float32", 4, true, true, -3.4028234663852886e38, 3.4028234663852886e38},
    {"float64", 8, true, true, -1.7976931348623157e308, 1.7976931348623157e308},
}};
const Traits& tr(DType t) { return kTraits[static_cast<std::size_t>(t)]; }

DType int_of(bool is_signed, std::size_t size) {
  switch (size) {
    case 1: return is_signed ? DType::i8 : DType::u8;
    case 2: return is_signed ? DType::i16 : DType::u16;
    case 4: return is_signed ? DType::i32 : DType::u32;
    default: return is_signed ? DType::i64 : DType::u64;
  }
}
}  // namespace

std::size_t dtype_size(DType t) noexcept { return tr(t).size; }
bool dtype_is_float(DType t) noexcept { return tr(t).is_float; }
bool dtype_is_signed(DType t) noexcept { return tr(t).is_signed; }
std::string_view dtype_name(DType t) noexcept { return tr(t).name; }
double dtype_max(DType t) noexcept { return tr(t).is_float ? 1.0 : tr(t).hi; }
double dtype_min(DType t) noexcept { return tr(t).is_float ? 0.0 : tr(t).lo; }

DType dtype_from_name(std::string_view name) {
  std::string n(name);
  if (!n.empty() && (n[0] == '<' || n[0] == '=' || n[0] == '|')) n.erase(0, 1);
  static const std::pair<std::string_view, DType> aliases[] = {
      {"u1", DType::u8},   {"u2", DType::u16},  {"u4", DType::u32},  {"u8", DType::u64},
      {"i1", DType::i8},   {"i2", DType::i16},  {"i4", DType::i32},  {"i8", DType::i64},
      {"f4", DType::f32},  {"f8", DType::f64},  {"float", DType::f64}, {"double", DType::f64},
      {"single", DType::f32}, {"int", DType::i64}, {"uint", DType::u64},
  };
  for (std::size_t i = 0; i < kTraits.size(); ++i)
    if (kTraits[i].name == n) return static_cast<DType>(i);
  for (const auto& [alias, t] : aliases)
    if (alias == n) return t;
  fail(ErrorKind::Value, "unsupported dtype '" + std::string(name) +
                             "': use one of uint8, uint16, uint32, uint64, int8, int16, int32, int64, "
                             "float32, float64");
}

DType dtype_promote(DType a, DType b) noexcept {
  if (a == b) return a;
  const Traits &ta = tr(a), &tb = tr(b);
  if (ta.is_float || tb.is_float) {
    if (ta.is_float && tb.is_float) return ta.size >= tb.size ? a : b;
    const Traits& i = ta.is_float ? tb : ta;
    const Traits& f = ta.is_float ? ta : tb;
    // numpy: float32 holds ints up to 16 bits exactly; wider ints need float64.
    return (f.size == 4 && i.size <= 2) ? DType::f32 : DType::f64;
  }
  if (ta.is_signed == tb.is_signed) return ta.size >= tb.size ? a : b;
  const Traits& s = ta.is_signed ? ta : tb;
  const Traits& u = ta.is_signed ? tb : ta;
  if (s.size > u.size) return int_of(true, s.size);
  if (u.size == 8) return DType::f64;  // numpy: int64 + uint64 -> float64
  return int_of(true, u.size * 2);
}

}  // namespace i2z
