#include "store/s3_xml.hpp"

#include <cstdint>
#include <functional>

#include "i2z/error.hpp"

namespace i2z::s3 {

namespace {

using OnEnd = std::function<void(const std::vector<std::string>& path, const std::string& text)>;

[[noreturn]] void corrupt(const std::string& why) { fail(ErrorKind::Corrupt, "malformed S3 XML response: " + why); }

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) corrupt("invalid character reference");
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string_view local_name(std::string_view qname) {
  const auto colon = qname.find(':');
  return colon == std::string_view::npos ? qname : qname.substr(colon + 1);
}

// Calls on_end for every element when it closes, with the element path (local names, root
// first) and its own decoded text (CDATA included, child elements' text excluded).
void walk(std::string_view x, const OnEnd& on_end) {
  std::vector<std::string> path;
  std::vector<std::string> text;
  std::size_t pos = 0;
  bool seen_root = false;
  const auto find_or_fail = [&](std::string_view what, std::size_t from) {
    const auto at = x.find(what, from);
    if (at == std::string_view::npos) corrupt("unterminated markup");
    return at;
  };
  while (pos < x.size()) {
    if (x[pos] != '<') {
      auto end = x.find('<', pos);
      if (end == std::string_view::npos) end = x.size();
      const std::string_view chunk = x.substr(pos, end - pos);
      if (path.empty()) {
        for (char c : chunk)
          if (!is_space(c)) corrupt("text outside the root element");
      } else {
        text.back() += xml_unescape(chunk);
      }
      pos = end;
      continue;
    }
    const std::string_view rest = x.substr(pos);
    if (rest.starts_with("<?")) {
      pos = find_or_fail("?>", pos) + 2;
    } else if (rest.starts_with("<!--")) {
      pos = find_or_fail("-->", pos + 4) + 3;
    } else if (rest.starts_with("<![CDATA[")) {
      const auto end = find_or_fail("]]>", pos + 9);
      if (path.empty()) corrupt("CDATA outside the root element");
      text.back().append(x.substr(pos + 9, end - pos - 9));
      pos = end + 3;
    } else if (rest.starts_with("<!")) {
      pos = find_or_fail(">", pos) + 1;
    } else if (rest.starts_with("</")) {
      const auto end = find_or_fail(">", pos);
      std::string_view name = x.substr(pos + 2, end - pos - 2);
      while (!name.empty() && is_space(name.back())) name.remove_suffix(1);
      if (path.empty() || local_name(name) != path.back())
        corrupt("mismatched closing tag </" + std::string(name) + ">");
      on_end(path, text.back());
      path.pop_back();
      text.pop_back();
      pos = end + 1;
    } else {
      // Start tag; attribute values are quoted and may contain '>' or '/'.
      std::size_t i = pos + 1;
      char quote = 0;
      for (; i < x.size(); ++i) {
        const char c = x[i];
        if (quote) {
          if (c == quote) quote = 0;
        } else if (c == '"' || c == '\'') {
          quote = c;
        } else if (c == '>') {
          break;
        }
      }
      if (i >= x.size()) corrupt("unterminated start tag");
      const bool self_closing = x[i - 1] == '/';
      std::size_t name_end = pos + 1;
      while (name_end < i && !is_space(x[name_end]) && x[name_end] != '/' && x[name_end] != '>') ++name_end;
      const std::string_view name = local_name(x.substr(pos + 1, name_end - pos - 1));
      if (name.empty()) corrupt("empty element name");
      if (path.empty()) {
        if (seen_root) corrupt("more than one root element");
        seen_root = true;
      }
      path.emplace_back(name);
      text.emplace_back();
      if (self_closing) {
        on_end(path, text.back());
        path.pop_back();
        text.pop_back();
      }
      pos = i + 1;
    }
  }
  if (!path.empty()) corrupt("unclosed element <" + path.back() + ">");
  if (!seen_root) corrupt("no root element");
}

bool parse_bool(const std::string& s) {
  if (s == "true") return true;
  if (s == "false") return false;
  corrupt("expected true/false, got '" + s + "'");
}

}  // namespace

std::string xml_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string xml_unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out.push_back(s[i]);
      continue;
    }
    const auto semi = s.find(';', i);
    if (semi == std::string_view::npos) corrupt("unterminated entity");
    const std::string_view ent = s.substr(i + 1, semi - i - 1);
    if (ent == "amp") out.push_back('&');
    else if (ent == "lt") out.push_back('<');
    else if (ent == "gt") out.push_back('>');
    else if (ent == "quot") out.push_back('"');
    else if (ent == "apos") out.push_back('\'');
    else if (ent.size() >= 2 && ent[0] == '#') {
      const bool hex = ent[1] == 'x' || ent[1] == 'X';
      const std::string_view digits = ent.substr(hex ? 2 : 1);
      if (digits.empty() || digits.size() > 8) corrupt("bad character reference");
      std::uint32_t cp = 0;
      for (char c : digits) {
        std::uint32_t d;
        if (c >= '0' && c <= '9') d = static_cast<std::uint32_t>(c - '0');
        else if (hex && c >= 'a' && c <= 'f') d = static_cast<std::uint32_t>(c - 'a' + 10);
        else if (hex && c >= 'A' && c <= 'F') d = static_cast<std::uint32_t>(c - 'A' + 10);
        else corrupt("bad character reference");
        cp = cp * (hex ? 16 : 10) + d;
        if (cp > 0x10FFFF) corrupt("bad character reference");
      }
      append_utf8(out, cp);
    } else {
      corrupt("unknown entity &" + std::string(ent) + ";");
    }
    i = semi;
  }
  return out;
}

ListPage parse_list_objects_v2(std::string_view xml) {
  ListPage page;
  bool has_truncated = false;
  walk(xml, [&](const std::vector<std::string>& path, const std::string& text) {
    if (path.front() != "ListBucketResult") corrupt("expected <ListBucketResult>, got <" + path.front() + ">");
    if (path.size() == 2 && path[1] == "IsTruncated") {
      page.truncated = parse_bool(text);
      has_truncated = true;
    } else if (path.size() == 2 && path[1] == "NextContinuationToken") {
      page.next_token = text;
    } else if (path.size() == 3 && path[1] == "Contents" && path[2] == "Key") {
      page.keys.push_back(text);
    }
  });
  if (!has_truncated) corrupt("<ListBucketResult> without <IsTruncated>");
  if (page.truncated && page.next_token.empty()) corrupt("truncated listing without <NextContinuationToken>");
  return page;
}

UploadsPage parse_list_multipart_uploads(std::string_view xml) {
  UploadsPage page;
  std::string key, id;
  walk(xml, [&](const std::vector<std::string>& path, const std::string& text) {
    if (path.front() != "ListMultipartUploadsResult")
      corrupt("expected <ListMultipartUploadsResult>, got <" + path.front() + ">");
    if (path.size() == 2 && path[1] == "IsTruncated") page.truncated = parse_bool(text);
    else if (path.size() == 2 && path[1] == "NextKeyMarker") page.next_key_marker = text;
    else if (path.size() == 2 && path[1] == "NextUploadIdMarker") page.next_upload_id_marker = text;
    else if (path.size() == 3 && path[1] == "Upload" && path[2] == "Key") key = text;
    else if (path.size() == 3 && path[1] == "Upload" && path[2] == "UploadId") id = text;
    else if (path.size() == 2 && path[1] == "Upload") {
      if (key.empty() || id.empty()) corrupt("<Upload> without <Key> or <UploadId>");
      page.uploads.emplace_back(std::move(key), std::move(id));
      key.clear();
      id.clear();
    }
  });
  if (page.truncated && page.next_key_marker.empty()) corrupt("truncated upload listing without <NextKeyMarker>");
  return page;
}

std::optional<ErrorBody> parse_error(std::string_view xml) {
  ErrorBody err;
  bool is_error = false;
  try {
    walk(xml, [&](const std::vector<std::string>& path, const std::string& text) {
      if (path.front() != "Error") return;
      is_error = true;
      if (path.size() == 2 && path[1] == "Code") err.code = text;
      else if (path.size() == 2 && path[1] == "Message") err.message = text;
    });
  } catch (const Error&) {
    return std::nullopt;
  }
  if (!is_error) return std::nullopt;
  return err;
}

std::string parse_upload_id(std::string_view xml) {
  std::string id;
  walk(xml, [&](const std::vector<std::string>& path, const std::string& text) {
    if (path.size() == 2 && path[0] == "InitiateMultipartUploadResult" && path[1] == "UploadId") id = text;
  });
  if (id.empty()) corrupt("no <UploadId> in the CreateMultipartUpload response");
  return id;
}

std::string complete_multipart_body(const std::vector<std::string>& etags) {
  std::string out = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">";
  for (std::size_t i = 0; i < etags.size(); ++i) {
    out += "<Part><PartNumber>" + std::to_string(i + 1) + "</PartNumber><ETag>" + xml_escape(etags[i]) +
           "</ETag></Part>";
  }
  out += "</CompleteMultipartUpload>";
  return out;
}

}  // namespace i2z::s3
