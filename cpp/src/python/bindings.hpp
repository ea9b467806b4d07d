// Parts of the _core module defined in their own files (one per area).
#pragma once
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "i2z/dtype.hpp"

namespace i2z {
void bind_reader(nanobind::module_& m);  // reader_bindings.cpp
void bind_resize(nanobind::module_& m);  // resize_bindings.cpp
void bind_store(nanobind::module_& m);   // store_bindings.cpp
// storage_options (flat scalars; s3fs client_kwargs/config_kwargs flattened) -> string map.
std::map<std::string, std::string> storage_options_from(nanobind::handle obj);
// Helpers shared by the binding files (module.cpp).
nanobind::dlpack::dtype to_dlpack(DType t);
DType from_dlpack(nanobind::dlpack::dtype d);
nanobind::object numpy_from(std::vector<std::uint8_t>&& bytes, DType t, const std::vector<std::uint64_t>& shape);
}  // namespace i2z
