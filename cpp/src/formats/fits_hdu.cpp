// FITS HDU selection, description and astropy's scaling; reading the pixels (see fits.cpp).
#include <type_traits>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "formats/fits_internal.hpp"

namespace i2z::fits {

// ---------------------------------------------------------------------------------------------
// HDU selection and description.



void move_to(fitsfile* f, int number, int* hdutype) {
  int status = 0;
  fits_movabs_hdu(f, number, hdutype, &status);
  if (status) fits_fail(status, "cannot read HDU " + std::to_string(number - 1));
}

// HDU count; moves to the last HDU.
int count_hdus(fitsfile* f) {
  int n = 0, status = 0;
  fits_get_num_hdus(f, &n, &status);
  if (status) fits_fail(status, "cannot count HDUs");
  return n;
}

// Moves to HDU `number` (1-based); false when the file has fewer HDUs.
bool try_move(fitsfile* f, int number, int* hdutype) {
  int status = 0;
  fits_movabs_hdu(f, number, hdutype, &status);
  if (status == END_OF_FILE) return false;
  if (status) fits_fail(status, "cannot read HDU " + std::to_string(number - 1));
  return true;
}

std::string upper_strip(std::string_view s) {
  std::string out(strip(s));
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

int resolve(fitsfile* f, const FitsSelector& sel) {
  int hdutype = 0;
  if (const int* index = std::get_if<int>(&sel)) {
    if (*index >= 0) {
      if (*index < std::numeric_limits<int>::max() && try_move(f, *index + 1, &hdutype)) return *index + 1;
      fail(ErrorKind::Value, "FITS HDU index " + std::to_string(*index) + " out of range (the file has " +
                                 std::to_string(count_hdus(f)) + " HDUs)");
    }
    const int n = count_hdus(f);
    if (-static_cast<long long>(*index) > n)
      fail(ErrorKind::Value, "FITS HDU index " + std::to_string(*index) + " out of range (the file has " +
                                 std::to_string(n) + " HDUs)");
    return n + *index + 1;
  }
  const std::string want = upper_strip(std::get<std::string>(sel));
  if (want == "PRIMARY") return 1;
  std::string names;  // for the error: the EXTNAMEs the file has
  for (int number = 1; try_move(f, number, &hdutype); ++number) {
    char value[FLEN_VALUE] = {0};
    int status = 0;
    fits_read_key_str(f, "EXTNAME", value, nullptr, &status);
    std::string name;
    if (status == 0) {
      name = upper_strip(value);
    } else if (status == KEY_NO_EXIST) {
      status = 0;
      if (number == 1) name = "PRIMARY";
      else if (fits_is_compressed_image(f, &status)) name = "COMPRESSED_IMAGE";  // astropy's default
    } else {
      fits_fail(status, "cannot read EXTNAME of HDU " + std::to_string(number - 1));
    }
    if (name == want) return number;
    names += (names.empty() ? "" : ", ") + (name.empty() ? std::string("(none)") : name);
  }
  fail(ErrorKind::Value, "no FITS HDU with EXTNAME '" + std::get<std::string>(sel) + "' (the file has " +
                             std::to_string(count_hdus(f)) + " HDUs, EXTNAMEs: " + names + ")");
}

// Whether the current HDU (number `number`) is an image with NAXIS > 0; if not, *why_not says why.
bool image_hdu(fitsfile* f, int number, int hdutype, std::string* why_not) {
  int status = 0;
  const bool compressed = fits_is_compressed_image(f, &status) != 0;
  if (status) fits_fail(status, "cannot read HDU " + std::to_string(number - 1));
  if (hdutype != IMAGE_HDU && !compressed) {
    *why_not = "HDU " + std::to_string(number - 1) + " is " +
               (hdutype == ASCII_TBL ? "an ASCII table" : "a binary table") + ", not an image";
    return false;
  }
  int naxis = 0;
  fits_get_img_dim(f, &naxis, &status);
  if (status) fits_fail(status, "cannot read the image dimensions of HDU " + std::to_string(number - 1));
  if (naxis == 0) {
    *why_not = "HDU " + std::to_string(number - 1) + " has no image data";
    return false;
  }
  return true;
}

DType raw_dtype(int bitpix) {
  switch (bitpix) {
    case BYTE_IMG: return DType::u8;
    case SHORT_IMG: return DType::i16;
    case LONG_IMG: return DType::i32;
    case LONGLONG_IMG: return DType::i64;
    case FLOAT_IMG: return DType::f32;
    case DOUBLE_IMG: return DType::f64;
    default: fail(ErrorKind::Corrupt, "invalid FITS BITPIX " + std::to_string(bitpix));
  }
}

Hdu describe(fitsfile* f, int number) {
  Hdu h;
  h.number = number;
  int hdutype = 0, status = 0;
  move_to(f, number, &hdutype);
  std::string why_not;
  if (!image_hdu(f, number, hdutype, &why_not)) fail(ErrorKind::Value, why_not);
  h.compressed = fits_is_compressed_image(f, &status) != 0;
  int naxis = 0;
  LONGLONG naxes[999];
  fits_get_img_paramll(f, 999, &h.bitpix, &naxis, naxes, &status);
  if (status) fits_fail(status, "cannot read the image parameters of HDU " + std::to_string(number - 1));
  for (int i = 0; i < naxis; ++i) {
    if (naxes[i] <= 0)
      fail(ErrorKind::Value, "HDU " + std::to_string(number - 1) + " has no image data (an axis of length 0)");
    h.axes.push_back(static_cast<std::uint64_t>(naxes[i]));
  }
  h.raw = raw_dtype(h.bitpix);
  // Read from the HDU's own header: a tile-compressed HDU keeps the image's BSCALE, BZERO and
  // BLANK under those names (cfitsio's image view of the header copies them).
  // A present but unreadable or non-finite value ('abc', NAN) is an error, as in astropy; only
  // an absent keyword takes the default.
  auto number_key = [&](const char* key, double fallback) {
    double v = fallback;
    int st = 0;
    fits_read_key_dbl(f, key, &v, nullptr, &st);
    if (st == KEY_NO_EXIST) return fallback;
    if (st || !std::isfinite(v)) {
      char text[FLEN_VALUE] = {0};
      int ignored = 0;
      fits_read_keyword(f, key, text, nullptr, &ignored);
      fail(ErrorKind::Corrupt, "HDU " + std::to_string(number - 1) + " has an invalid " + key + " value: " +
                                   std::string(strip(text)));
    }
    return v;
  };
  h.bscale = number_key("BSCALE", 1.0);
  h.bzero = number_key("BZERO", 0.0);
  if (h.bitpix > 0) {
    LONGLONG blank = 0;
    int st = 0;
    fits_read_key_lnglng(f, "BLANK", &blank, nullptr, &st);
    if (st == 0) h.blank = blank;
  }

  // astropy's _dtype_for_bitpix / _convert_pseudo_integer / _scale_data.
  const bool scaled = !(h.bzero == 0.0 && h.bscale == 1.0);
  h.mode = Mode::Copy;
  h.dtype = h.raw;
  if (h.bscale == 1.0 && h.bitpix > 0 && scaled) {
    if (h.bitpix == 8 && h.bzero == -128.0) h.mode = Mode::Unsigned, h.dtype = DType::i8;
    if (h.bitpix == 16 && h.bzero == 32768.0) h.mode = Mode::Unsigned, h.dtype = DType::u16;
    if (h.bitpix == 32 && h.bzero == 2147483648.0) h.mode = Mode::Unsigned, h.dtype = DType::u32;
    if (h.bitpix == 64 && h.bzero == 9223372036854775808.0) h.mode = Mode::Unsigned, h.dtype = DType::u64;
  }
  if (h.mode == Mode::Copy && (scaled || (h.blank && h.bitpix > 0))) {
    h.mode = Mode::Scale;
    if (h.bitpix > 0) h.dtype = h.bitpix > 16 ? DType::f64 : DType::f32;
  }
  return h;
}

// (C,H,W) of one HDU after squeezing length-1 axes past the third; `stack` wants 2-D.
std::vector<std::uint64_t> hdu_shape(const Hdu& h, bool stack) {
  const auto& a = h.axes;
  for (std::size_t i = 3; i < a.size(); ++i)
    if (a[i] != 1)
      fail(ErrorKind::Value, "HDU " + std::to_string(h.number - 1) + " has " + std::to_string(a.size()) +
                                 " axes; only 1-3 (plus axes of length 1) are supported");
  if (stack) {
    if (a.size() < 2 || (a.size() >= 3 && a[2] != 1))
      fail(ErrorKind::Value, "HDU " + std::to_string(h.number - 1) +
                                 " is not a 2-D image; only 2-D HDUs can be stacked as channels");
    return {a[1], a[0]};
  }
  if (a.size() == 1) return {a[0]};
  if (a.size() == 2) return {a[1], a[0]};
  return {a[2], a[1], a[0]};
}

std::string shape_text(const std::vector<std::uint64_t>& s) {
  std::string t = "(";
  for (std::size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + (s.size() == 1 ? ",)" : ")");
}

std::string selector_text(const FitsSelector& s) {
  if (const int* i = std::get_if<int>(&s)) return std::to_string(*i);
  return std::get<std::string>(s);
}


// Selection + description shared by probe and decode.
Plan plan(fitsfile* f, const FormatOptions& options) {
  Plan p;
  ImageInfo& info = p.info;
  const auto& sel = options.fits_extension;
  if (sel.empty()) {
    // The first image HDU with data (tables and empty HDUs skipped; a tile-compressed image
    // counts as an image).
    int hdutype = 0, number = 1;
    std::string why_not, first_why_not;
    for (; try_move(f, number, &hdutype); ++number) {
      if (image_hdu(f, number, hdutype, &why_not)) break;
      if (first_why_not.empty() && number > 1) first_why_not = why_not;
    }
    if (!try_move(f, number, &hdutype)) {
      if (number <= 2) fail(ErrorKind::Value, "no image data in the primary HDU and no extension HDU");
      fail(ErrorKind::Value, "no image HDU with data among the " + std::to_string(number - 1) +
                                 " HDUs (no image data in the primary HDU, and " + first_why_not + ")");
    }
    p.hdus.push_back(describe(f, number));
    info.fits_extension = std::to_string(number - 1);
  } else {
    for (const FitsSelector& s : sel) p.hdus.push_back(describe(f, resolve(f, s)));
    if (sel.size() == 1) {
      info.fits_extension = selector_text(sel[0]);
    } else {
      info.fits_extension = "[";
      for (std::size_t i = 0; i < sel.size(); ++i) {
        if (i) info.fits_extension += ", ";
        info.fits_extension += std::holds_alternative<int>(sel[i]) ? selector_text(sel[i])
                                                                    : nlohmann::json(selector_text(sel[i])).dump();
      }
      info.fits_extension += "]";
    }
  }

  info.layout = PixelLayout::CHW;
  if (p.hdus.size() == 1) {
    info.shape = hdu_shape(p.hdus[0], false);
    info.dtype = p.hdus[0].dtype;
  } else {
    const auto first = hdu_shape(p.hdus[0], true);
    info.dtype = p.hdus[0].dtype;
    for (std::size_t i = 1; i < p.hdus.size(); ++i) {
      const auto s = hdu_shape(p.hdus[i], true);
      if (s != first)
        fail(ErrorKind::Value, "FITS HDU " + std::to_string(p.hdus[i].number - 1) + " has shape " + shape_text(s) +
                                   " but HDU " + std::to_string(p.hdus[0].number - 1) + " has shape " +
                                   shape_text(first) + "; stacked HDUs must have the same shape");
      info.dtype = dtype_promote(info.dtype, p.hdus[i].dtype);
    }
    info.shape = {p.hdus.size(), first[0], first[1]};
  }
  const auto& s = info.shape;
  info.width = s.back();
  info.height = s.size() >= 2 ? s[s.size() - 2] : 1;
  const std::uint64_t channels = s.size() == 3 ? s[0] : 1;
  std::uint64_t pixels = 1;
  for (auto d : s) pixels = sat_mul(pixels, d);
  if (pixels > options.max_pixels || channels > std::numeric_limits<std::uint32_t>::max()) {
    std::string dims;
    for (std::size_t i = 0; i < s.size(); ++i) dims += (i ? "x" : "") + std::to_string(s[i]);
    fail(ErrorKind::Value, "image of " + dims + " pixels exceeds the limit of " + std::to_string(options.max_pixels) +
                               " (max_pixels)");
  }
  info.channels = static_cast<std::uint32_t>(channels);
  return p;
}

// ---------------------------------------------------------------------------------------------
// Pixels: raw read by cfitsio, then astropy's scaling and the cast to the output dtype, in
// place (the raw values sit at the end of the output region, and sizeof(raw) <= sizeof(out)).

template <class T>
struct Tag {
  using type = T;
};

template <class F>
void with_dtype(DType t, F&& f) {
  switch (t) {
    case DType::u8: return f(Tag<std::uint8_t>{});
    case DType::u16: return f(Tag<std::uint16_t>{});
    case DType::u32: return f(Tag<std::uint32_t>{});
    case DType::u64: return f(Tag<std::uint64_t>{});
    case DType::i8: return f(Tag<std::int8_t>{});
    case DType::i16: return f(Tag<std::int16_t>{});
    case DType::i32: return f(Tag<std::int32_t>{});
    case DType::i64: return f(Tag<std::int64_t>{});
    case DType::f32: return f(Tag<float>{});
    case DType::f64: return f(Tag<double>{});
  }
}

int cfitsio_type(DType raw) {
  switch (raw) {
    case DType::u8: return TBYTE;
    case DType::i16: return TSHORT;
    case DType::i32: return TINT;
    case DType::i64: return TLONGLONG;
    case DType::f32: return TFLOAT;
    case DType::f64: return TDOUBLE;
    default: fail(ErrorKind::Runtime, "internal error: no cfitsio type for this raw dtype");
  }
}

template <class Raw, class Mid, class Out>
void convert_copy(const Raw* in, Out* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(static_cast<Mid>(in[i]));
}

// The unsigned convention: raw + 2^(bits-1) == raw with the sign bit flipped.
template <class Raw, class Mid, class Out>
void convert_unsigned(const Raw* in, Out* out, std::size_t n) {
  using U = std::make_unsigned_t<Raw>;
  constexpr U flip = U(U(1) << (sizeof(U) * 8 - 1));
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(static_cast<Mid>(static_cast<U>(in[i]) ^ flip));
}

// astropy scales in numpy: one rounding for the multiply and one for the add, so they must
// not be contracted into an FMA (GCC's default in C++ on targets that have one, e.g. aarch64).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
template <class Raw, class Mid, class Out>
void convert_scale(const Raw* in, Out* out, std::size_t n, const Hdu& h) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
  const Mid scale = static_cast<Mid>(h.bscale), zero = static_cast<Mid>(h.bzero);
  const bool mul = h.bscale != 1.0, add = h.bzero != 0.0;
  const bool blank = h.blank && *h.blank != 0;  // astropy: `if self._blank:` skips BLANK = 0
  const Raw blank_value = blank ? static_cast<Raw>(*h.blank) : Raw{};
  const bool blank_fits = blank && static_cast<std::int64_t>(blank_value) == *h.blank;
  for (std::size_t i = 0; i < n; ++i) {
    const Raw r = in[i];
    Mid v = static_cast<Mid>(r);
    if (mul) v = v * scale;
    if (add) v = v + zero;
    if constexpr (std::is_integral_v<Raw>) {
      if (blank_fits && r == blank_value) v = std::numeric_limits<Mid>::quiet_NaN();
    }
    out[i] = static_cast<Out>(v);
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

template <class Out>
void convert_hdu(const void* raw, Out* out, std::size_t n, const Hdu& h) {
  // (raw type, mode) fixes astropy's type (Mid); see describe().
  auto run = [&](auto raw_tag, auto unsigned_tag, auto scaled_tag) {
    using Raw = typename decltype(raw_tag)::type;
    const Raw* in = static_cast<const Raw*>(raw);
    if (h.mode == Mode::Scale) {
      convert_scale<Raw, typename decltype(scaled_tag)::type, Out>(in, out, n, h);
    } else if (h.mode == Mode::Unsigned) {
      using Unsigned = typename decltype(unsigned_tag)::type;
      if constexpr (std::is_integral_v<Raw>) convert_unsigned<Raw, Unsigned, Out>(in, out, n);
    } else {
      convert_copy<Raw, Raw, Out>(in, out, n);
    }
  };
  switch (h.raw) {
    case DType::u8: return run(Tag<std::uint8_t>{}, Tag<std::int8_t>{}, Tag<float>{});
    case DType::i16: return run(Tag<std::int16_t>{}, Tag<std::uint16_t>{}, Tag<float>{});
    case DType::i32: return run(Tag<std::int32_t>{}, Tag<std::uint32_t>{}, Tag<double>{});
    case DType::i64: return run(Tag<std::int64_t>{}, Tag<std::uint64_t>{}, Tag<double>{});
    case DType::f32: return run(Tag<float>{}, Tag<float>{}, Tag<float>{});
    case DType::f64: return run(Tag<double>{}, Tag<double>{}, Tag<double>{});
    default: fail(ErrorKind::Runtime, "internal error: unexpected raw FITS dtype");
  }
}

// Reads HDU `h` (n pixels) into `region`, which holds n values of `out_dtype`.
// The zero padding of a copy must stand in for block padding only: data of the current HDU
// reaching into it means a truncated file (and zeros would be fed to cfitsio's tile decoders,
// whose RICE decoder runs past its buffer on long runs of zero bytes).
void require_unpadded_data(fitsfile* f, std::uint64_t real_size) {
  LONGLONG head = 0, data = 0, end = 0, bitpix = 0, naxis = 0, pcount = 0, gcount = 1;
  int status = 0;
  fits_get_hduaddrll(f, &head, &data, &end, &status);
  fits_read_key_lnglng(f, "BITPIX", &bitpix, nullptr, &status);
  fits_read_key_lnglng(f, "NAXIS", &naxis, nullptr, &status);
  if (status) fits_fail(status, "cannot read the data layout");
  std::uint64_t elements = naxis > 0 ? 1 : 0;
  for (LONGLONG i = 1; i <= naxis; ++i) {
    LONGLONG len = 0;
    fits_read_key_lnglng(f, ("NAXIS" + std::to_string(i)).c_str(), &len, nullptr, &status);
    elements = sat_mul(elements, static_cast<std::uint64_t>(std::max<LONGLONG>(len, 0)));
  }
  int optional = 0;
  fits_read_key_lnglng(f, "PCOUNT", &pcount, nullptr, &optional);
  optional = 0;
  fits_read_key_lnglng(f, "GCOUNT", &gcount, nullptr, &optional);
  if (status) fits_fail(status, "cannot read the data layout");
  const std::uint64_t bytes = sat_mul(sat_mul(static_cast<std::uint64_t>(std::llabs(bitpix)) / 8,
                                              static_cast<std::uint64_t>(std::max<LONGLONG>(gcount, 0))),
                                      sat_add(static_cast<std::uint64_t>(std::max<LONGLONG>(pcount, 0)), elements));
  if (sat_add(static_cast<std::uint64_t>(data), bytes) > real_size)
    fail(ErrorKind::Corrupt, "FITS file is truncated (the data ends " +
                                 std::to_string(sat_add(static_cast<std::uint64_t>(data), bytes)) +
                                 " bytes in, the file has " + std::to_string(real_size) + ")");
}

void read_hdu(fitsfile* f, std::uint64_t padded_from, const Hdu& h, DType out_dtype, unsigned char* region,
              std::size_t n) {
  int hdutype = 0, status = 0, anynul = 0;
  move_to(f, h.number, &hdutype);
  if (padded_from) require_unpadded_data(f, padded_from);
  if (h.compressed) validate_tiles(f, h);
  fits_set_bscale(f, 1.0, 0.0, &status);  // raw values; astropy's scaling is applied below
  const std::size_t raw_size = dtype_size(h.raw), out_size = dtype_size(out_dtype);
  unsigned char* raw = region + n * (out_size - raw_size);
  // Only tile-compressed floats need null handling: cfitsio writes NaN for their ZBLANK pixels.
  float fnan = std::numeric_limits<float>::quiet_NaN();
  double dnan = std::numeric_limits<double>::quiet_NaN();
  void* nulval = nullptr;
  if (h.compressed && h.raw == DType::f32) nulval = &fnan;
  if (h.compressed && h.raw == DType::f64) nulval = &dnan;
  fits_read_img(f, cfitsio_type(h.raw), 1, static_cast<LONGLONG>(n), nulval, raw, &anynul, &status);
  if (status) fits_fail(status, "cannot read the pixels of HDU " + std::to_string(h.number - 1));
  if (h.mode == Mode::Copy && h.raw == out_dtype) return;
  with_dtype(out_dtype, [&](auto out_tag) {
    using Out = typename decltype(out_tag)::type;
    convert_hdu<Out>(raw, reinterpret_cast<Out*>(region), n, h);
  });
}

}  // namespace i2z::fits
