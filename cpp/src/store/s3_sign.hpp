// AWS Signature Version 4 for S3, as pure functions (no I/O, no clock): the caller passes the
// request time, so the published AWS example vectors are reproducible in tests.
// Reference: "Authenticating Requests: Using the Authorization Header (AWS Signature Version 4)".
#pragma once
#include <cstdint>
#include <ctime>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace i2z::s3 {

using Params = std::vector<std::pair<std::string, std::string>>;

// Lower-case hex SHA-256 of the bytes (the x-amz-content-sha256 value of a body).
std::string sha256_hex(std::span<const std::uint8_t> data);
std::string sha256_hex(std::string_view data);
// Raw 32-byte HMAC-SHA256.
std::string hmac_sha256(std::string_view key, std::string_view data);
std::string to_hex(std::string_view raw);

// RFC 3986 percent-encoding as SigV4 wants it: unreserved characters (A-Z a-z 0-9 - . _ ~)
// are kept, every other byte becomes %XX (upper-case hex); '/' is kept when !encode_slash.
// UTF-8 keys are encoded byte by byte. S3 object paths are encoded once (not twice).
std::string uri_encode(std::string_view s, bool encode_slash);
// Query parameters (raw, unencoded) -> "k1=v1&k2=v2", each part encoded, sorted by encoded key
// then value. The same string is sent on the wire, so what is signed is what is sent.
std::string canonical_query(const Params& params);
// "20130524T000000Z" for a UTC time.
std::string amz_datetime(std::time_t t);

struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // sent (and signed) as x-amz-security-token when not empty
};

struct SigningInput {
  std::string method;         // "GET", "PUT", ...
  std::string canonical_uri;  // already encoded path, e.g. "/bucket/a%20b"
  Params query;               // raw parameters
  Params headers;             // every header to sign (any case); must include host and x-amz-date
  std::string payload_hash;   // hex SHA-256 of the body (or "UNSIGNED-PAYLOAD")
};

std::string canonical_request(const SigningInput& in);
// Credential scope "<yyyymmdd>/<region>/<service>/aws4_request".
std::string credential_scope(std::string_view amz_datetime, std::string_view region, std::string_view service);
std::string string_to_sign(std::string_view amz_datetime, std::string_view scope, std::string_view canonical_request);
std::string signature(const SigningInput& in, std::string_view secret, std::string_view amz_datetime,
                      std::string_view region, std::string_view service = "s3");
// The complete Authorization header value. amz_datetime must equal the signed x-amz-date header.
std::string authorization(const SigningInput& in, const Credentials& creds, std::string_view amz_datetime,
                          std::string_view region, std::string_view service = "s3");

}  // namespace i2z::s3
