// Calls f(T{}) with the C++ type of a DType: one switch for every typed kernel.
#pragma once
#include <cstdint>

#include "i2z/dtype.hpp"

namespace i2z {

template <typename F>
decltype(auto) dispatch_dtype(DType t, F&& f) {
  switch (t) {
    case DType::u8: return f(std::uint8_t{});
    case DType::u16: return f(std::uint16_t{});
    case DType::u32: return f(std::uint32_t{});
    case DType::u64: return f(std::uint64_t{});
    case DType::i8: return f(std::int8_t{});
    case DType::i16: return f(std::int16_t{});
    case DType::i32: return f(std::int32_t{});
    case DType::i64: return f(std::int64_t{});
    case DType::f32: return f(float{});
    default: return f(double{});
  }
}

}  // namespace i2z
