// S3-compatible object storage behind the Store interface, and the one function that maps a
// store location ("path/to/x.zarr" or "s3://bucket/prefix/x.zarr") to a backend.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "i2z/store.hpp"

namespace i2z {

struct S3Options {
  // "" = AWS (https://s3.<region>.amazonaws.com); otherwise "scheme://host[:port][/base]".
  std::string endpoint_url;
  std::string region;  // "" = us-east-1
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;
  // Unsigned requests (public buckets). Also used when no credentials are configured.
  bool anonymous = false;
  // "path" (http://host/bucket/key), "virtual" (http://bucket.host/key) or "auto": path
  // style for a custom endpoint or a bucket name that is not a DNS label, virtual otherwise.
  std::string addressing = "auto";
  int max_retries = 8;                  // further attempts after the first
  std::uint32_t retry_base_ms = 100;    // back-off: full jitter in [0, min(cap, base * 2^n)]
  std::uint32_t retry_cap_ms = 20'000;
  std::uint32_t connect_timeout_ms = 10'000;
  std::uint32_t request_timeout_ms = 0;  // per attempt; 0 = unlimited
  std::uint32_t stall_timeout_s = 30;    // an attempt moving no bytes for this long is retried
  bool verify_tls = true;
  // open_writer(): objects up to part_size go up in one PUT at commit(); larger ones as a
  // multipart upload of part_size parts (>= 5 MiB, S3's minimum), max_inflight_parts at once
  // per writer (memory per writer <= (max_inflight_parts + 1) * part_size).
  std::uint64_t part_size = std::uint64_t{8} << 20;
  int max_inflight_parts = 4;
  int list_max_keys = 1000;  // page size of ListObjectsV2 (1..1000)
};

// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION (else
// AWS_DEFAULT_REGION), AWS_ENDPOINT_URL_S3 (else AWS_ENDPOINT_URL).
S3Options s3_options_from_env();

// Overrides from a storage_options map (fsspec/s3fs names accepted):
//   endpoint_url | endpoint, region | region_name, key | aws_access_key_id | access_key_id,
//   secret | aws_secret_access_key | secret_access_key, token | aws_session_token |
//   session_token, anon (bool), addressing | addressing_style, max_retries, retry_base_ms,
//   retry_cap_ms, connect_timeout | read_timeout | request_timeout (seconds), verify (bool),
//   part_size (bytes), max_concurrency | max_inflight_parts, list_max_keys.
// Booleans: true/false/1/0/yes/no. Giving a key or secret without a token drops a token taken
// from the environment. Unknown names or bad values -> Error(Value) naming them.
void apply_storage_options(S3Options& options, const std::map<std::string, std::string>& storage_options);

// url = "s3://bucket[/prefix]"; the store's keys live under "prefix/". Nothing is contacted
// until the first request. Thread-safe. Errors (ErrorKind::IO) name the object as
// s3://bucket/key and never contain credentials; 401/403 say "access denied".
std::shared_ptr<Store> open_s3_store(const std::string& url, const S3Options& options);

bool is_s3_url(const std::string& path_or_url);

// "s3://..." -> open_s3_store(url, env options + storage_options); anything else is a local
// path (open_local_store), where a non-empty storage_options is an Error(Value).
std::shared_ptr<Store> open_store_url(const std::string& path_or_url,
                                      const std::map<std::string, std::string>& storage_options = {});

}  // namespace i2z
