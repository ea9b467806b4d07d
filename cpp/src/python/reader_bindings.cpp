// _core.Reader: the C++ ArrayReader on a store (local path or s3:// URL), returning fresh numpy arrays. The GIL is
// released while reading; errors cross as i2z::Error (translated in module.cpp).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <filesystem>
#include <memory>

#include "i2z/error.hpp"
#include "i2z/reader.hpp"
#include "i2z/s3.hpp"
#include "python/bindings.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace i2z {

namespace {

struct PyReader {
  std::unique_ptr<ArrayReader> reader;
  std::string attrs_json;

  PyReader(const std::string& path, unsigned threads, const std::map<std::string, std::string>& storage_options) {
    // storage_options on a local path, or an unsupported URL: Error(Value) before any I/O.
    std::shared_ptr<Store> store = open_store_url(path, storage_options);
    if (!store->exists("zarr.json")) {
      std::error_code ec;
      const bool missing = is_s3_url(path) ? store->list("").empty() : !std::filesystem::exists(path, ec);
      if (missing) fail(ErrorKind::FileNotFound, "no such store: '" + path + "'");
      fail(ErrorKind::Value, "'" + path + "' is not a Zarr v3 store (no zarr.json)");
    }
    ReaderOptions o;
    o.threads = threads;
    reader = open_image_array(store, o);
    attrs_json = group_attributes_json(*store);
  }

  // A numpy array of k items, filled by `fill(ptr)` with the GIL released.
  template <class F>
  nb::object make(std::uint64_t k, F&& fill) {
    const auto& shp = reader->shape();
    std::vector<std::size_t> dims{static_cast<std::size_t>(k)};
    dims.insert(dims.end(), shp.begin() + 1, shp.end());
    const std::size_t n = static_cast<std::size_t>(k) * reader->item_bytes();
    // Uninitialised on purpose: the reader writes every byte (data or fill value).
    std::unique_ptr<std::uint8_t[]> buf(new std::uint8_t[n ? n : 1]);
    {
      nb::gil_scoped_release nogil;
      fill(buf.get());
    }
    std::uint8_t* data = buf.get();
    nb::capsule owner(buf.release(), [](void* p) noexcept { delete[] static_cast<std::uint8_t*>(p); });
    return nb::ndarray<nb::numpy>(data, dims.size(), dims.data(), owner, nullptr, to_dlpack(reader->dtype())).cast();
  }

  static std::vector<std::uint64_t> checked(const std::int64_t* p, std::size_t n, std::int64_t stride) {
    std::vector<std::uint64_t> out(n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::int64_t v = p[static_cast<std::ptrdiff_t>(i) * stride];
      if (v < 0) fail(ErrorKind::Index, "index " + std::to_string(v) + " is out of range (negative)");
      out[i] = static_cast<std::uint64_t>(v);
    }
    return out;
  }

  nb::object read_indices(const std::vector<std::uint64_t>& idx) {
    return make(idx.size(), [&](std::uint8_t* out) { reader->read(idx, out); });
  }
};

}  // namespace

void bind_reader(nb::module_& m) {
  nb::class_<PyReader>(m, "Reader",
                       "Random-access reader of a store's images array (or of a bare root array).")
      .def(
          "__init__",
          [](PyReader* self, const std::string& path, unsigned threads, nb::handle storage_options) {
            auto opts = storage_options_from(storage_options);
            nb::gil_scoped_release nogil;  // opening an s3:// store talks to the server
            new (self) PyReader(path, threads, opts);
          },
          "path"_a, "threads"_a = 0, "storage_options"_a = nb::none())
      .def_static(
          "open",
          [](const std::string& path, unsigned threads, nb::handle storage_options) {
            auto opts = storage_options_from(storage_options);
            nb::gil_scoped_release nogil;
            return new PyReader(path, threads, opts);
          },
          "path"_a, "threads"_a = 0, "storage_options"_a = nb::none(), nb::rv_policy::take_ownership)
      .def_prop_ro("shape",
                   [](const PyReader& r) {
                     nb::list l;
                     for (auto v : r.reader->shape()) l.append(v);
                     return nb::tuple(l);
                   })
      .def_prop_ro("dtype", [](const PyReader& r) { return std::string(dtype_name(r.reader->dtype())); })
      .def_prop_ro("attrs_json", [](const PyReader& r) { return r.attrs_json; })
      .def_prop_ro("array_attrs_json", [](const PyReader& r) { return r.reader->attributes_json(); })
      .def_prop_ro("location", [](const PyReader& r) { return r.reader->describe(); })
      .def(
          "read_indices",
          [](PyReader& r, nb::ndarray<const std::int64_t, nb::ndim<1>, nb::device::cpu> idx) {
            return r.read_indices(PyReader::checked(idx.data(), idx.shape(0), idx.stride(0)));
          },
          "indices"_a, "Items at these indices (repeats allowed) as a (k, ...) array.")
      .def(
          "read_indices",
          [](PyReader& r, const std::vector<std::int64_t>& idx) {
            return r.read_indices(PyReader::checked(idx.data(), idx.size(), 1));
          },
          "indices"_a)
      .def(
          "read_range",
          [](PyReader& r, std::int64_t a, std::int64_t b) {
            if (a < 0 || b < a) fail(ErrorKind::Index, "invalid range [" + std::to_string(a) + ", " + std::to_string(b) + ")");
            return r.make(static_cast<std::uint64_t>(b - a), [&](std::uint8_t* out) {
              r.reader->read_range(static_cast<std::uint64_t>(a), static_cast<std::uint64_t>(b), out);
            });
          },
          "start"_a, "stop"_a, "Items [start, stop) as a (stop - start, ...) array.")
      .def("stats", [](const PyReader& r) {
        const auto s = r.reader->stats();
        return nb::make_tuple(s.index_reads, s.chunk_reads);
      });
}

}  // namespace i2z
