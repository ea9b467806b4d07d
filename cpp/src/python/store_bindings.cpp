// _core.Store / _core.StoreWriter: the key/value store behind a Zarr store (local path or
// s3:// URL), for the Python side (Parquet side-car next to an S3 store) and for the store
// conformance tests. Every call releases the GIL.
#include <nanobind/nanobind.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <map>
#include <memory>
#include <span>

#include "i2z/error.hpp"
#include "i2z/s3.hpp"
#include "i2z/store.hpp"
#include "python/bindings.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace i2z {

// storage_options as given to convert()/open_store(): a flat dict of scalars (bools and
// numbers become strings), and the s3fs spellings client_kwargs={"endpoint_url", "region_name",
// "verify"} and config_kwargs={"s3": {"addressing_style"}, "connect_timeout", "read_timeout",
// "retries": {"max_attempts"}} flattened.
std::map<std::string, std::string> storage_options_from(nb::handle obj) {
  std::map<std::string, std::string> out;
  if (obj.is_none()) return out;
  if (!nb::isinstance<nb::dict>(obj)) fail(ErrorKind::Value, "storage_options must be a dict");
  const auto scalar = [](nb::handle v) -> std::string {
    if (nb::isinstance<nb::bool_>(v)) return nb::cast<bool>(v) ? "true" : "false";
    return nb::cast<std::string>(nb::str(v));
  };
  for (auto [k, v] : nb::borrow<nb::dict>(obj)) {
    const std::string key = nb::cast<std::string>(nb::str(k));
    if (v.is_none()) continue;
    if ((key == "client_kwargs" || key == "config_kwargs") && nb::isinstance<nb::dict>(v)) {
      for (auto [k2, v2] : nb::borrow<nb::dict>(v)) {
        const std::string key2 = nb::cast<std::string>(nb::str(k2));
        if (v2.is_none()) continue;
        if (key2 == "s3" && nb::isinstance<nb::dict>(v2)) {
          for (auto [k3, v3] : nb::borrow<nb::dict>(v2)) out[nb::cast<std::string>(nb::str(k3))] = scalar(v3);
        } else if (key2 == "retries" && nb::isinstance<nb::dict>(v2)) {
          nb::dict r = nb::borrow<nb::dict>(v2);
          if (r.contains("max_attempts"))
            out["max_retries"] = std::to_string(std::max(0, nb::cast<int>(r["max_attempts"]) - 1));
        } else {
          out[key2] = scalar(v2);
        }
      }
      continue;
    }
    if (nb::isinstance<nb::dict>(v) || nb::isinstance<nb::list>(v))
      fail(ErrorKind::Value, "storage_options['" + key + "'] must be a string, number or bool");
    out[key] = scalar(v);
  }
  return out;
}

namespace {

std::span<const std::uint8_t> bytes_span(const nb::bytes& b) {
  return {reinterpret_cast<const std::uint8_t*>(b.c_str()), b.size()};
}

nb::object to_py(std::optional<Bytes>&& b) {
  if (!b) return nb::none();
  return nb::bytes(reinterpret_cast<const char*>(b->data()), b->size());
}

struct PyWriter {
  std::unique_ptr<ObjectWriter> w;
  ObjectWriter& get() {
    if (!w) fail(ErrorKind::Value, "the store writer was already committed or discarded");
    return *w;
  }
};

struct PyStore {
  std::shared_ptr<Store> s;
};

}  // namespace

void bind_store(nb::module_& m) {
  nb::class_<PyWriter>(m, "StoreWriter",
                       "A streamed object: nothing is visible under the key until commit(); discard() (or "
                       "garbage collection) drops an uncommitted upload.")
      .def(
          "write",
          [](PyWriter& self, const nb::bytes& data) {
            nb::gil_scoped_release nogil;
            self.get().write(bytes_span(data));
          },
          "data"_a)
      .def_prop_ro("size", [](PyWriter& self) { return self.get().size(); })
      .def("commit",
           [](PyWriter& self) {
             {
               nb::gil_scoped_release nogil;
               self.get().commit();
             }
             self.w.reset();
           })
      .def("discard", [](PyWriter& self) {
        nb::gil_scoped_release nogil;
        self.w.reset();
      });

  nb::class_<PyStore>(m, "Store", "Key/value store behind a Zarr store: a local directory or s3://bucket/prefix.")
      .def_static(
          "open",
          [](const std::string& url, nb::handle storage_options) {
            auto opts = storage_options_from(storage_options);
            return PyStore{open_store_url(url, opts)};
          },
          "url"_a, "storage_options"_a = nb::none())
      .def(
          "get",
          [](PyStore& self, const std::string& key) {
            std::optional<Bytes> b;
            {
              nb::gil_scoped_release nogil;
              b = self.s->get(key);
            }
            return to_py(std::move(b));
          },
          "key"_a)
      .def(
          "get_range",
          [](PyStore& self, const std::string& key, std::uint64_t offset, std::uint64_t length) {
            std::optional<Bytes> b;
            {
              nb::gil_scoped_release nogil;
              b = self.s->get_range(key, offset, length);
            }
            return to_py(std::move(b));
          },
          "key"_a, "offset"_a, "length"_a)
      .def(
          "get_suffix",
          [](PyStore& self, const std::string& key, std::uint64_t length) {
            std::optional<Bytes> b;
            {
              nb::gil_scoped_release nogil;
              b = self.s->get_suffix(key, length);
            }
            return to_py(std::move(b));
          },
          "key"_a, "length"_a)
      .def(
          "size",
          [](PyStore& self, const std::string& key) {
            nb::gil_scoped_release nogil;
            return self.s->size(key);
          },
          "key"_a)
      .def(
          "exists",
          [](PyStore& self, const std::string& key) {
            nb::gil_scoped_release nogil;
            return self.s->exists(key);
          },
          "key"_a)
      .def(
          "set",
          [](PyStore& self, const std::string& key, const nb::bytes& data) {
            nb::gil_scoped_release nogil;
            self.s->set(key, bytes_span(data));
          },
          "key"_a, "data"_a)
      .def(
          "erase",
          [](PyStore& self, const std::string& key) {
            nb::gil_scoped_release nogil;
            self.s->erase(key);
          },
          "key"_a)
      .def(
          "list",
          [](PyStore& self, const std::string& prefix) {
            nb::gil_scoped_release nogil;
            return self.s->list(prefix);
          },
          "prefix"_a = "")
      .def("remove_incomplete",
           [](PyStore& self) {
             nb::gil_scoped_release nogil;
             self.s->remove_incomplete();
           })
      .def(
          "open_writer",
          [](PyStore& self, const std::string& key) {
            nb::gil_scoped_release nogil;
            return PyWriter{self.s->open_writer(key)};
          },
          "key"_a)
      .def("describe", [](const PyStore& self) { return self.s->describe(); })
      .def("__repr__", [](const PyStore& self) { return "<images_to_zarr Store " + self.s->describe() + ">"; });
}

}  // namespace i2z
