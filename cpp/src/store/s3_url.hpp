// Where an S3 request goes: parsing "s3://bucket/prefix" and the endpoint URL, and building
// the request URL, Host header and SigV4 canonical URI for path- or virtual-host addressing.
// Pure functions, no I/O.
#pragma once
#include <string>
#include <string_view>

#include "store/s3_sign.hpp"

namespace i2z::s3 {

struct Location {
  std::string bucket;
  std::string prefix;  // without leading or trailing '/', "" for the bucket root
};
// "s3://bucket[/prefix...]"; Error(Value) for anything else or an empty bucket name.
Location parse_s3_url(std::string_view url);

struct Endpoint {
  std::string scheme;     // "http" or "https"
  std::string host;       // host name or [IPv6], with ":port" only when not the scheme's default
  std::string base_path;  // "" or "/base" (no trailing '/')
};
// "scheme://host[:port][/base]"; Error(Value) naming the value otherwise.
Endpoint parse_endpoint(std::string_view url);
// The AWS endpoint for a region: https://s3.<region>.amazonaws.com.
Endpoint aws_endpoint(std::string_view region);

// Bucket names usable as a DNS label under TLS: 3-63 of [a-z0-9-], no dots.
bool virtual_host_compatible(std::string_view bucket);

struct Target {
  std::string url;            // full URL with the canonical query string
  std::string host;           // the Host header value (signed)
  std::string canonical_uri;  // encoded path, as signed and as sent
};

class Addresser {
 public:
  // addressing: "path", "virtual" or "auto" (path for custom endpoints and for bucket names
  // that are not DNS labels, virtual for AWS).
  Addresser(Endpoint endpoint, std::string bucket, std::string_view addressing, bool custom_endpoint);
  // key = full object key ("" addresses the bucket itself, for listing).
  Target target(std::string_view key, const Params& query) const;
  bool virtual_host() const { return virtual_; }

 private:
  Endpoint ep_;
  std::string bucket_;
  bool virtual_ = false;
};

}  // namespace i2z::s3
