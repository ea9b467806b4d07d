#include "store/s3_url.hpp"

#include <cctype>

#include "i2z/error.hpp"

namespace i2z::s3 {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

Location parse_s3_url(std::string_view url) {
  if (!url.starts_with("s3://"))
    fail(ErrorKind::Value, "not an S3 URL (expected s3://bucket/prefix): '" + std::string(url) + "'");
  std::string_view rest = url.substr(5);
  const auto slash = rest.find('/');
  Location loc;
  loc.bucket = std::string(rest.substr(0, slash));
  if (loc.bucket.empty()) fail(ErrorKind::Value, "S3 URL without a bucket name: '" + std::string(url) + "'");
  if (loc.bucket.find_first_of("?#") != std::string::npos)
    fail(ErrorKind::Value, "invalid S3 bucket name in '" + std::string(url) + "'");
  std::string_view prefix = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
  while (!prefix.empty() && prefix.front() == '/') prefix.remove_prefix(1);
  while (!prefix.empty() && prefix.back() == '/') prefix.remove_suffix(1);
  loc.prefix = std::string(prefix);
  return loc;
}

Endpoint parse_endpoint(std::string_view url) {
  const auto bad = [&](const std::string& why) -> Endpoint {
    fail(ErrorKind::Value, "invalid S3 endpoint_url '" + std::string(url) + "': " + why);
  };
  Endpoint ep;
  const auto sep = url.find("://");
  if (sep == std::string_view::npos) return bad("expected scheme://host[:port]");
  ep.scheme = lower(url.substr(0, sep));
  if (ep.scheme != "http" && ep.scheme != "https") return bad("the scheme must be http or https");
  std::string_view rest = url.substr(sep + 3);
  const auto path_at = rest.find('/');
  std::string_view authority = rest.substr(0, path_at);
  std::string_view path = path_at == std::string_view::npos ? std::string_view{} : rest.substr(path_at);
  if (authority.find('@') != std::string_view::npos) return bad("credentials do not belong in the URL");
  if (rest.find_first_of("?#") != std::string_view::npos) return bad("no query or fragment allowed");
  std::string_view host = authority, port;
  if (authority.starts_with("[")) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return bad("unterminated IPv6 address");
    host = authority.substr(0, close + 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("junk after the IPv6 address");
      port = after.substr(1);
    }
  } else if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) return bad("no host");
  if (!port.empty() || authority.ends_with(":")) {
    if (port.empty() || port.size() > 5) return bad("bad port");
    for (char c : port)
      if (c < '0' || c > '9') return bad("bad port");
    if (std::stoul(std::string(port)) > 65535) return bad("bad port");
  }
  ep.host = lower(host);
  const bool default_port = port.empty() || (ep.scheme == "http" && port == "80") || (ep.scheme == "https" && port == "443");
  if (!default_port) ep.host += ":" + std::string(port);
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  ep.base_path = std::string(path);
  return ep;
}

Endpoint aws_endpoint(std::string_view region) {
  return Endpoint{"https", "s3." + std::string(region) + ".amazonaws.com", ""};
}

bool virtual_host_compatible(std::string_view b) {
  if (b.size() < 3 || b.size() > 63) return false;
  for (char c : b)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return b.front() != '-' && b.back() != '-';
}

Addresser::Addresser(Endpoint endpoint, std::string bucket, std::string_view addressing, bool custom_endpoint)
    : ep_(std::move(endpoint)), bucket_(std::move(bucket)) {
  if (addressing == "path") virtual_ = false;
  else if (addressing == "virtual") virtual_ = true;
  else if (addressing == "auto") virtual_ = !custom_endpoint && virtual_host_compatible(bucket_);
  else fail(ErrorKind::Value, "S3 addressing must be 'path', 'virtual' or 'auto', got '" + std::string(addressing) + "'");
  if (virtual_ && bucket_.find_first_of("/:[]") != std::string::npos)
    fail(ErrorKind::Value, "S3 bucket '" + bucket_ + "' cannot be used with virtual-host addressing");
}

Target Addresser::target(std::string_view key, const Params& query) const {
  Target t;
  std::string path = ep_.base_path;
  if (virtual_) {
    t.host = bucket_ + "." + ep_.host;
    path += "/" + uri_encode(key, false);
  } else {
    t.host = ep_.host;
    path += "/" + uri_encode(bucket_, true);
    if (!key.empty()) path += "/" + uri_encode(key, false);
  }
  t.canonical_uri = path;
  t.url = ep_.scheme + "://" + t.host + path;
  const std::string q = canonical_query(query);
  if (!q.empty()) t.url += "?" + q;
  return t;
}

}  // namespace i2z::s3
