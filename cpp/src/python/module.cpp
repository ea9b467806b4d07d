// The nanobind extension images_to_zarr._core: binds the public C++ API (plus read_image for
// tests and tools). Every engine call runs with the GIL released; progress and warnings cross
// back in batches through the progress callback.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include <cmath>
#include <cstring>

#include "codecs/codec.hpp"
#include "formats/file_io.hpp"
#include "formats/format.hpp"
#include "formats/png_fast.hpp"
#include "i2z/convert.hpp"
#include "pipeline/commit.hpp"
#include "i2z/error.hpp"
#include "pipeline/log.hpp"
#include "python/bindings.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace i2z {

nb::dlpack::dtype to_dlpack(DType t) {
  switch (t) {
    case DType::u8: return nb::dtype<std::uint8_t>();
    case DType::u16: return nb::dtype<std::uint16_t>();
    case DType::u32: return nb::dtype<std::uint32_t>();
    case DType::u64: return nb::dtype<std::uint64_t>();
    case DType::i8: return nb::dtype<std::int8_t>();
    case DType::i16: return nb::dtype<std::int16_t>();
    case DType::i32: return nb::dtype<std::int32_t>();
    case DType::i64: return nb::dtype<std::int64_t>();
    case DType::f32: return nb::dtype<float>();
    default: return nb::dtype<double>();
  }
}

DType from_dlpack(nb::dlpack::dtype d) {
  for (DType t : {DType::u8, DType::u16, DType::u32, DType::u64, DType::i8, DType::i16, DType::i32, DType::i64,
                  DType::f32, DType::f64})
    if (to_dlpack(t) == d) return t;
  fail(ErrorKind::Value, "unsupported array dtype: use an unsigned/signed integer (8-64 bit) or float32/float64 array");
}

// Owned numpy array from a byte buffer.
nb::object numpy_from(std::vector<std::uint8_t>&& bytes, DType t, const std::vector<std::uint64_t>& shape) {
  auto* owner = new std::vector<std::uint8_t>(std::move(bytes));
  nb::capsule cap(owner, [](void* p) noexcept { delete static_cast<std::vector<std::uint8_t>*>(p); });
  std::vector<std::size_t> shp(shape.begin(), shape.end());
  nb::ndarray<nb::numpy> arr(owner->data(), shp.size(), shp.data(), cap, nullptr, to_dlpack(t));
  return arr.cast();
}

namespace {

PyObject* exception_type(ErrorKind k) {
  switch (k) {
    case ErrorKind::Value: return PyExc_ValueError;
    case ErrorKind::FileNotFound: return PyExc_FileNotFoundError;
    case ErrorKind::FileExists: return PyExc_FileExistsError;
    case ErrorKind::Index: return PyExc_IndexError;
    case ErrorKind::IO: return PyExc_OSError;
    case ErrorKind::Corrupt: return PyExc_ValueError;
    case ErrorKind::Cancelled: return PyExc_KeyboardInterrupt;
    default: return PyExc_RuntimeError;
  }
}

ConvertOptions options_from(const nb::dict& d) {
  ConvertOptions o;
  for (auto [k, v] : d) {
    const std::string key = nb::cast<std::string>(k);
    if (v.is_none()) continue;
    if (key == "chunk_shape") o.chunk_shape = nb::cast<std::vector<std::uint64_t>>(v);
    else if (key == "shard_images") o.shard_images = nb::cast<std::uint64_t>(v);
    else if (key == "compressor") o.compressor = nb::cast<std::string>(v);
    else if (key == "clevel") o.clevel = nb::cast<int>(v);
    else if (key == "checksum") o.checksum = nb::cast<bool>(v);
    else if (key == "dtype") o.dtype = dtype_from_name(nb::cast<std::string>(v));
    else if (key == "fits_extension") o.fits_extension = nb::cast<std::vector<FitsSelector>>(v);
    else if (key == "resize") o.resize = nb::cast<std::pair<std::uint64_t, std::uint64_t>>(v);
    else if (key == "interpolation_order") o.interpolation_order = nb::cast<int>(v);
    else if (key == "pad") o.pad = nb::cast<bool>(v);
    else if (key == "num_workers") o.num_workers = std::max(1, nb::cast<int>(v));
    else if (key == "max_pixels") {
      const auto mp = nb::cast<std::int64_t>(v);
      if (mp < 1) fail(ErrorKind::Value, "max_pixels must be >= 1, got " + std::to_string(mp));
      o.max_pixels = static_cast<std::uint64_t>(mp);
    }
    else if (key == "max_channels") o.max_channels = nb::cast<std::uint32_t>(v);
    else if (key == "max_memory") o.max_memory = nb::cast<std::uint64_t>(v);
    else if (key == "extra_attributes_json") o.extra_attributes_json = nb::cast<std::string>(v);
    else if (key == "resume") o.resume = nb::cast<bool>(v);
    else if (key == "storage_options") o.storage_options = storage_options_from(v);
    else fail(ErrorKind::Value, "unknown conversion option '" + key + "'");
  }
  return o;
}

WriteMode write_mode(const std::string& m) {
  if (m == "create") return WriteMode::Create;
  if (m == "overwrite") return WriteMode::Overwrite;
  if (m == "append") return WriteMode::Append;
  fail(ErrorKind::Value, "unknown write mode '" + m + "'");
}

nb::object opt_str(const std::string& s) { return s.empty() ? nb::none() : nb::cast(s); }

// Records as columns (what pyarrow wants), built with the GIL held: one shard's worth at a time.
nb::dict records_to_columns(const std::vector<ImageRecord>& records) {
  nb::list src, fmt, size, dtype, shape, fext, fhdr, mn, mx, mean, err;
  for (const auto& r : records) {
    src.append(opt_str(r.source_path));
    fmt.append(opt_str(r.format));
    size.append(r.file_size_bytes);
    dtype.append(opt_str(r.dtype));
    shape.append(nb::cast(r.shape));
    fext.append(opt_str(r.fits_extension));
    fhdr.append(opt_str(r.fits_header_json));
    const bool ok = r.error.empty();
    mn.append(ok ? nb::cast(r.min_value) : nb::none());
    mx.append(ok ? nb::cast(r.max_value) : nb::none());
    mean.append(ok ? nb::cast(r.mean_value) : nb::none());
    err.append(opt_str(r.error));
  }
  nb::dict d;
  d["source_path"] = src;
  d["format"] = fmt;
  d["file_size_bytes"] = size;
  d["dtype"] = dtype;
  d["shape"] = shape;
  d["fits_extension"] = fext;
  d["fits_header"] = fhdr;
  d["min_value"] = mn;
  d["max_value"] = mx;
  d["mean_value"] = mean;
  d["error"] = err;
  return d;
}

// A pending Ctrl-C, checked by the engine's waiting loops on this thread (pipeline/log.hpp):
// it becomes Error(Cancelled), i.e. KeyboardInterrupt, whatever the workers are doing.
InterruptScope python_interrupts() {
  return InterruptScope([] {
    nb::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) {
      PyErr_Clear();
      fail(ErrorKind::Cancelled, "interrupted");
    }
  });
}

struct PyConversion {
  std::unique_ptr<Conversion> conv;
  nb::object keepalive;  // the input array for convert_array

  // `records(first_index, columns)` gets each committed shard's records, in order, with the
  // GIL held on this thread; nothing keeps them afterwards.
  nb::dict run(nb::object callback, nb::object records) {
    ProgressFn fn;
    if (!callback.is_none())
      fn = [&callback](const Progress& p) {
        nb::gil_scoped_acquire gil;
        callback(p.done, p.total, p.failed, nb::cast(p.warnings));
      };
    RecordsFn rec;
    if (!records.is_none())
      rec = [&records](std::uint64_t first, std::vector<ImageRecord>&& recs) {
        nb::gil_scoped_acquire gil;
        records(first, records_to_columns(recs));
      };
    ConvertResult res;
    {
      const InterruptScope interrupts = python_interrupts();
      nb::gil_scoped_release nogil;
      res = conv->run(fn, rec);
    }
    nb::dict out;
    out["shape"] = nb::cast(res.shape);
    out["dtype"] = std::string(dtype_name(res.dtype));
    out["failed"] = res.failed;
    out["start_index"] = res.start_index;
    out["warnings"] = nb::cast(res.warnings);
    return out;
  }
  nb::dict plan(std::vector<std::string> probes) {
    const ConversionPlan* p;
    {
      const InterruptScope interrupts = python_interrupts();
      nb::gil_scoped_release nogil;
      p = &conv->plan(probes);
    }
    nb::dict out;
    out["plan"] = p->json;
    out["first_shard"] = p->first_shard;
    out["end_shard"] = p->end_shard;
    out["shard_images"] = p->shard_images;
    out["start_index"] = p->start_index;
    out["total_images"] = p->total_images;
    out["warnings"] = nb::cast(p->warnings);
    out["sidecar"] = p->sidecar;
    out["sidecar_staging"] = p->sidecar_staging;
    out["run_id"] = p->run_id;
    out["committed"] = p->committed;
    return out;
  }
  nb::dict saved_records(std::uint64_t shard) {
    std::vector<ImageRecord> recs;
    {
      nb::gil_scoped_release nogil;
      recs = conv->saved_records(shard);
    }
    return records_to_columns(recs);
  }
  void finish() {
    nb::gil_scoped_release nogil;
    conv->finish();
  }
  void commit() {
    nb::gil_scoped_release nogil;
    conv->commit();
  }
  void abort() {
    nb::gil_scoped_release nogil;
    conv->abort();
  }
};

}  // namespace
}  // namespace i2z

NB_MODULE(_core, m) {
  using namespace i2z;
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const Error& e) {
      PyErr_SetString(exception_type(e.kind()), e.what());
    }
  });

  bind_reader(m);
  bind_resize(m);
  bind_store(m);

  m.def("version", [] { return std::string(version()); });
  m.def("supported_extensions", [] { return supported_extensions(); });
  m.def("compressor_names", [] { return compressor_names(); });

  m.def(
      "discover_files",
      [](const std::vector<std::string>& folders, bool recursive, const std::vector<std::string>& include,
         const std::vector<std::string>& exclude) {
        std::vector<std::string> warnings, files;
        {
          nb::gil_scoped_release nogil;
          files = discover_files(folders, recursive, &warnings, include, exclude);
        }
        return std::make_pair(files, warnings);
      },
      "folders"_a, "recursive"_a = false, "include"_a = std::vector<std::string>{},
      "exclude"_a = std::vector<std::string>{});

  m.def("selected", &selected, "relative"_a, "include"_a, "exclude"_a);

  m.def(
      "read_image",
      [](const std::string& path, std::optional<std::vector<FitsSelector>> fits_extension, std::uint64_t max_pixels) {
        const Format* f = format_for_path(path);
        if (!f) fail(ErrorKind::Value, "unsupported file extension: '" + path + "'");
        FormatOptions fo;
        if (fits_extension) fo.fits_extension = *fits_extension;
        fo.max_pixels = max_pixels;
        ImageInfo info;
        std::vector<std::uint8_t> buf;
        {
          nb::gil_scoped_release nogil;
          info = f->probe(path, fo);
          buf.resize(info.byte_size());
          f->decode(path, fo, info, buf.data());
        }
        nb::dict d;
        d["format"] = std::string(f->name());
        d["dtype"] = std::string(dtype_name(info.dtype));
        d["shape"] = nb::cast(info.shape);
        d["height"] = info.height;
        d["width"] = info.width;
        d["channels"] = info.channels;
        d["layout"] = info.layout == PixelLayout::CHW ? "CHW" : "HWC";
        d["fits_extension"] = info.fits_extension;
        d["fits_header"] = info.fits_header_json;
        std::uint64_t count = 1;
        for (auto s : info.shape) count *= s;
        if (count != info.pixel_count())
          fail(ErrorKind::Runtime, "decoder shape does not match its pixel count for '" + path + "'");
        return nb::make_tuple(numpy_from(std::move(buf), info.dtype, info.shape), d);
      },
      "path"_a, "fits_extension"_a = nb::none(), "max_pixels"_a = std::uint64_t{1} << 31);

  // One of png_format()'s two decoders alone, for the tests and the benchmark's "libpng decode"
  // row: "libpng", or "fast" (None when the fast path refuses the file).
  m.def(
      "read_png",
      [](const std::string& path, const std::string& decoder) -> nb::object {
        if (decoder != "fast" && decoder != "libpng") fail(ErrorKind::Value, "decoder must be 'fast' or 'libpng'");
        FormatOptions fo;
        ImageInfo info;
        std::vector<std::uint8_t> buf;
        bool ok = true;
        {
          nb::gil_scoped_release nogil;
          info = png_format().probe(path, fo);
          buf.resize(info.byte_size());
          const std::vector<unsigned char> data = read_whole_file(path);
          if (decoder == "fast") ok = png_decode_fast(data.data(), data.size(), fo, info, buf.data());
          else png_decode_libpng(data.data(), data.size(), fo, info, buf.data());
        }
        if (!ok) return nb::none();
        return numpy_from(std::move(buf), info.dtype, info.shape);
      },
      "path"_a, "decoder"_a);

  nb::class_<PyConversion>(m, "Conversion")
      .def("run", &PyConversion::run, "progress"_a = nb::none(), "records"_a = nb::none())
      .def("plan", &PyConversion::plan, "probes"_a = std::vector<std::string>{})
      .def("saved_records", &PyConversion::saved_records, "shard"_a)
      .def("finish", &PyConversion::finish)
      .def("commit", &PyConversion::commit)
      .def("abort", &PyConversion::abort);

  m.def(
      "store_paths",
      [](const std::string& store) {
        const StorePaths p = store_paths(store);
        return nb::make_tuple(p.store, p.sidecar);
      },
      "store"_a, "The store's real location (symlinks resolved) and its side-car folder beside it.");

  m.def(
      "probe_files",
      [](const std::vector<std::string>& files, const nb::dict& options) {
        const ConvertOptions o = options_from(options);
        const InterruptScope interrupts = python_interrupts();
        nb::gil_scoped_release nogil;
        return probe_files_json(files, o);
      },
      "files"_a, "options"_a);

  m.def(
      "write_shards",
      [](const std::string& plan, const std::vector<std::string>& files, std::uint64_t first_shard,
         std::uint64_t end_shard, unsigned workers) {
        nb::list shards;  // (first_index, columns) per shard
        RecordsFn rec = [&shards](std::uint64_t first, std::vector<ImageRecord>&& recs) {
          nb::gil_scoped_acquire gil;
          shards.append(nb::make_tuple(first, records_to_columns(recs)));
        };
        WarningSink sink;  // this task's warnings only
        {
          const SinkScope scope(&sink);
          const InterruptScope interrupts = python_interrupts();
          nb::gil_scoped_release nogil;
          write_shards(plan, files, first_shard, end_shard, std::max(1u, workers), {}, rec);
        }
        nb::dict out;
        out["warnings"] = nb::cast(sink.take());
        out["shards"] = shards;
        return out;
      },
      "plan"_a, "files"_a, "first_shard"_a, "end_shard"_a, "workers"_a = 1);

  m.def(
      "convert_files",
      [](const std::string& store, std::vector<std::string> files, const nb::dict& options, const std::string& mode) {
        auto o = options_from(options);
        std::unique_ptr<Conversion> conv;
        {
          nb::gil_scoped_release nogil;  // opening an s3:// store talks to the server
          conv = convert_files(store, std::move(files), o, write_mode(mode));
        }
        return PyConversion{std::move(conv), nb::none()};
      },
      "store"_a, "files"_a, "options"_a, "mode"_a = "create");

  m.def(
      "convert_array",
      [](const std::string& store, nb::ndarray<nb::ro, nb::c_contig, nb::device::cpu> array, const nb::dict& options,
         const std::string& mode) {
        if (array.ndim() != 4)
          fail(ErrorKind::Value, "images must be a 4-D array (N, C, H, W), got " + std::to_string(array.ndim()) + "-D");
        ArrayInput in;
        in.data = array.data();
        in.dtype = from_dlpack(array.dtype());
        in.n = array.shape(0);
        in.c = array.shape(1);
        in.h = array.shape(2);
        in.w = array.shape(3);
        auto o = options_from(options);
        std::unique_ptr<Conversion> conv;
        {
          nb::gil_scoped_release nogil;
          conv = convert_array(store, in, o, write_mode(mode));
        }
        return PyConversion{std::move(conv), nb::cast(array)};
      },
      "store"_a, "array"_a, "options"_a, "mode"_a = "create");
}
