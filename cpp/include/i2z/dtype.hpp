// Element types of stored arrays (the Zarr v3 core subset this project writes).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace i2z {

enum class DType : std::uint8_t { u8, u16, u32, u64, i8, i16, i32, i64, f32, f64 };

std::size_t dtype_size(DType t) noexcept;
bool dtype_is_float(DType t) noexcept;
bool dtype_is_signed(DType t) noexcept;
// numpy / Zarr v3 name: "uint8", "int16", "float32", ...
std::string_view dtype_name(DType t) noexcept;
// Accepts the names above plus numpy aliases ("u1", "<f4", "float", "double"); throws ValueError.
DType dtype_from_name(std::string_view name);
// numpy.result_type for two of these types (e.g. uint8+int8 -> int16, int32+float32 -> float64).
DType dtype_promote(DType a, DType b) noexcept;
// Largest value of an integer type as double (used for alpha = dtype max); 1.0 for floats.
double dtype_max(DType t) noexcept;
double dtype_min(DType t) noexcept;

}  // namespace i2z
