// _core.resize: the engine's per-channel resize (image/resize.hpp) on one in-memory array,
// for tests and for users who want the same numbers as the pipeline without writing a store.
#include <nanobind/ndarray.h>

#include <string>

#include "i2z/error.hpp"
#include "image/resize.hpp"
#include "python/bindings.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace i2z {

void bind_resize(nb::module_& m) {
  m.def(
      "resize",
      [](nb::ndarray<nb::ro, nb::c_contig, nb::device::cpu> array, std::uint64_t height, std::uint64_t width,
         int order) {
        const std::size_t nd = array.ndim();
        if (nd != 2 && nd != 3)
          fail(ErrorKind::Value, "resize expects a 2-D (H, W) or 3-D (C, H, W) array, got " + std::to_string(nd) + "-D");
        SrcImage src;
        src.data = array.data();
        src.dtype = from_dlpack(array.dtype());
        src.channels = nd == 3 ? static_cast<std::uint32_t>(array.shape(0)) : 1;
        src.height = array.shape(nd - 2);
        src.width = array.shape(nd - 1);
        src.chw = true;
        std::vector<std::uint8_t> out;
        DType out_dtype;
        {
          nb::gil_scoped_release nogil;
          resize_image(src, height, width, order, out, out_dtype);
        }
        std::vector<std::uint64_t> shape{height, width};
        if (nd == 3) shape.insert(shape.begin(), src.channels);
        return numpy_from(std::move(out), out_dtype, shape);
      },
      "array"_a, "height"_a, "width"_a, "order"_a = 1,
      "Resizes each channel of a (H, W) or (C, H, W) array like skimage.transform.resize(channel,\n"
      "(height, width), order=order, preserve_range=True, anti_aliasing=None). Returns float64\n"
      "(float32 for float32 input; the input dtype for order 0 on integers), not yet cast.");
}

}  // namespace i2z
