// FITS header cards -> typed values, as astropy parses them (see fits.cpp).
#include <charconv>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "formats/fits_internal.hpp"

namespace i2z::fits {

// ---------------------------------------------------------------------------------------------
// Header cards -> typed values (astropy's parsing rules).


std::string rstrip(std::string_view s) {
  std::size_t e = s.size();
  while (e > 0 && s[e - 1] == ' ') --e;
  return std::string(s.substr(0, e));
}

std::string_view strip(std::string_view s) {
  std::size_t b = 0, e = s.size();
  while (b < e && s[b] == ' ') ++b;
  while (e > b && s[e - 1] == ' ') --e;
  return s.substr(b, e - b);
}

// Parses a FITS quoted string starting at s[0] == '\''; returns the text ('' -> ') with
// trailing blanks removed, as astropy does. A missing closing quote ends at the card's end.
std::string parse_quoted(std::string_view s) {
  std::string out;
  for (std::size_t i = 1; i < s.size(); ++i) {
    if (s[i] == '\'') {
      if (i + 1 < s.size() && s[i + 1] == '\'') {
        out += '\'';
        ++i;
        continue;
      }
      break;
    }
    out += s[i];
  }
  return rstrip(out);
}

nlohmann::ordered_json number_or_string(std::string_view tok) {
  std::string_view t = tok;
  if (!t.empty() && t[0] == '+') t.remove_prefix(1);
  const bool has_digit = std::any_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!has_digit) return std::string(tok);
  if (t.find_first_of(".EeDd") == std::string_view::npos) {
    std::int64_t i;
    auto r = std::from_chars(t.data(), t.data() + t.size(), i);
    if (r.ec == std::errc() && r.ptr == t.data() + t.size()) return i;
    std::uint64_t u;
    r = std::from_chars(t.data(), t.data() + t.size(), u);
    if (r.ec == std::errc() && r.ptr == t.data() + t.size()) return u;
  }
  std::string f(t);
  for (char& c : f)
    if (c == 'D' || c == 'd') c = 'E';
  double d;
  const auto r = std::from_chars(f.data(), f.data() + f.size(), d);
  if (r.ptr != f.data() + f.size()) return std::string(tok);
  if (r.ec == std::errc::result_out_of_range) {
    // astropy (Python's float()) gives inf for 1E400; JSON has no inf, so it is a string.
    // Underflow (1E-400, or a subnormal from_chars refuses) keeps the card's text.
    const std::size_t e = f.find_first_of('E');
    const bool overflow = e == std::string::npos || e + 1 >= f.size() || f[e + 1] != '-';
    if (overflow) return f[0] == '-' ? "-inf" : "inf";
    return std::string(tok);
  }
  if (r.ec != std::errc() || !std::isfinite(d)) return std::string(tok);
  return d;
}

// Value field (after "= ") -> typed value. Comments after '/' are dropped.
nlohmann::ordered_json parse_value(std::string_view v) {
  std::size_t b = 0;
  while (b < v.size() && v[b] == ' ') ++b;
  v.remove_prefix(b);
  if (v.empty() || v[0] == '/') return nullptr;  // undefined value
  if (v[0] == '\'') return parse_quoted(v);
  const std::size_t slash = v.find('/');
  std::string_view tok = strip(v.substr(0, slash));
  if (tok == "T") return true;
  if (tok == "F") return false;
  if (!tok.empty() && tok[0] == '(') return std::string(tok);  // complex: no JSON type
  return number_or_string(tok);
}

// The image view of a tile-compressed HDU's table header, as astropy's CompImageHeader: the
// Z-prefixed image keywords under their image names (first, in FITS order), the table's own
// structure keywords dropped, every other card kept in order. Used where cfitsio's
// fits_convert_hdr2str refuses a valid header (ZTENSION late, BSCALE before it, ...).
std::string compressed_image_header(std::string_view table) {
  auto key_of = [](std::string_view card) { return rstrip(card.substr(0, 8)); };
  auto indexed = [](const std::string& k, std::string_view prefix) {
    if (k.size() <= prefix.size() || k.compare(0, prefix.size(), prefix) != 0) return false;
    return std::all_of(k.begin() + static_cast<std::ptrdiff_t>(prefix.size()), k.end(),
                       [](char c) { return c >= '0' && c <= '9'; });
  };
  std::vector<std::string_view> cards;
  for (std::size_t off = 0; off + 80 <= table.size(); off += 80) {
    const std::string_view card = table.substr(off, 80);
    if (key_of(card) == "END") break;
    cards.push_back(card);
  }
  auto find = [&](const std::string& key) -> std::string_view {
    for (auto c : cards)
      if (key_of(c) == key) return c;
    return {};
  };
  auto renamed = [](std::string_view card, const std::string& key) {
    std::string out = key;
    out.resize(8, ' ');
    out += card.substr(8);
    return out;
  };
  std::string out;
  const bool primary = !find("ZSIMPLE").empty();
  out += primary ? renamed(find("ZSIMPLE"), "SIMPLE") : "XTENSION= 'IMAGE   '" + std::string(60, ' ');
  for (const char* k : {"ZBITPIX", "ZNAXIS"})
    if (auto c = find(k); !c.empty()) out += renamed(c, k + 1);
  for (auto c : cards)
    if (const std::string k = key_of(c); indexed(k, "ZNAXIS")) out += renamed(c, k.substr(1));
  if (!primary)
    for (const char* k : {"ZPCOUNT", "ZGCOUNT"}) {
      if (auto c = find(k); !c.empty()) {
        out += renamed(c, k + 1);
      } else {  // absent: the image defaults, PCOUNT = 0 and GCOUNT = 1
        std::string card = std::string(k + 1) + "  = " + std::string(19, ' ') + (k[1] == 'P' ? "0" : "1");
        card.resize(80, ' ');
        out += card;
      }
    }
  static const char* const kDropped[] = {"XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "TFIELDS", "THEAP",
                                         "ZIMAGE", "ZSIMPLE", "ZTENSION", "ZBITPIX", "ZNAXIS", "ZPCOUNT",
                                         "ZGCOUNT", "ZCMPTYPE", "ZQUANTIZ", "ZDITHER0", "ZMASKCMP", "CHECKSUM",
                                         "DATASUM", "ZHECKSUM", "ZDATASUM", "ZEXTEND", "ZBLOCKED"};
  static const char* const kIndexed[] = {"NAXIS", "ZNAXIS", "TTYPE", "TFORM", "TUNIT", "TNULL", "TSCAL", "TZERO",
                                         "TDIM", "TDISP", "ZTILE", "ZNAME", "ZVAL"};
  for (auto c : cards) {
    const std::string k = key_of(c);
    if (std::any_of(std::begin(kDropped), std::end(kDropped), [&](const char* d) { return k == d; })) continue;
    if (std::any_of(std::begin(kIndexed), std::end(kIndexed), [&](const char* d) { return indexed(k, d); })) continue;
    out += c;
  }
  for (const char* k : {"ZEXTEND", "ZBLOCKED", "ZHECKSUM", "ZDATASUM"})
    if (auto c = find(k); !c.empty()) out += renamed(c, k[1] == 'H' ? "CHECKSUM" : k + 1);
  return out + "END" + std::string(77, ' ');
}

// The header text of the current HDU: for a tile-compressed HDU, that of the image it holds.
std::string header_text(fitsfile* f) {
  struct Free {
    char* p = nullptr;
    ~Free() {
      int s = 0;
      if (p) fits_free_memory(p, &s);
    }
  };
  Free converted;
  int ncards = 0, status = 0;
  fits_convert_hdr2str(f, 0, nullptr, 0, &converted.p, &ncards, &status);
  if (status == 0) return converted.p ? std::string(converted.p) : std::string();
  int st = 0;
  if (!fits_is_compressed_image(f, &st) || st) fits_fail(status, "cannot read the header");
  Free raw;
  status = 0;
  fits_hdr2str(f, 0, nullptr, 0, &raw.p, &ncards, &status);
  if (status) fits_fail(status, "cannot read the header");
  return compressed_image_header(raw.p ? std::string_view(raw.p) : std::string_view());
}

// All cards of the current HDU; for a tile-compressed HDU, those of the image it holds.
std::vector<Card> read_cards(fitsfile* f) {
  const std::string header = header_text(f);
  const char* text = header.c_str();
  std::vector<Card> cards;
  cards.reserve(header.size() / 80);
  const std::size_t len = header.size();
  for (std::size_t off = 0; off + 8 <= len; off += 80) {
    const std::string_view card(text + off, std::min<std::size_t>(80, len - off));
    std::string key = rstrip(card.substr(0, 8));
    if (key == "END") break;
    if (key.empty()) continue;  // blank keyword
    const std::string_view rest = card.substr(8);
    if (key == "COMMENT" || key == "HISTORY") {
      cards.push_back({key, rstrip(rest), true});
      continue;
    }
    if (key == "CONTINUE") {
      // Long-string convention: a string ending in '&' continues in the next CONTINUE card.
      std::string_view v = strip(rest);
      if (!cards.empty() && cards.back().value.is_string() && !v.empty() && v[0] == '\'') {
        std::string& prev = cards.back().value.get_ref<std::string&>();
        if (!prev.empty() && prev.back() == '&') {
          prev.pop_back();
          prev += parse_quoted(v);
          continue;
        }
      }
      cards.push_back({key, rstrip(rest), false});
      continue;
    }
    if (key == "HIERARCH") {
      const std::size_t eq = rest.find('=');
      if (eq != std::string_view::npos) {
        cards.push_back({std::string(strip(rest.substr(0, eq))), parse_value(rest.substr(eq + 1)), false});
        continue;
      }
    }
    if (rest.size() >= 2 && rest[0] == '=' && rest[1] == ' ')
      cards.push_back({key, parse_value(rest.substr(2)), false});
    else
      cards.push_back({key, std::string(strip(rest)), false});  // no value indicator: the text
  }
  return cards;
}

std::string header_json(const std::vector<Card>& cards) {
  nlohmann::ordered_json obj = nlohmann::ordered_json::object();
  for (const Card& c : cards) {
    if (c.commentary) {
      auto& list = obj[c.key];
      if (!list.is_array()) list = nlohmann::ordered_json::array();
      list.push_back(c.value);
    } else if (!obj.contains(c.key)) {  // a repeated keyword: astropy's header[key] is the first
      obj[c.key] = c.value;
    }
  }
  return obj.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace i2z::fits
