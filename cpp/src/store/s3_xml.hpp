// The few S3 XML documents the store reads and writes. A small non-validating scanner is
// enough: S3 responses are flat, use no DTDs, and escape text with the five predefined
// entities (plus numeric references). Malformed input raises i2z::Error(Corrupt).
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace i2z::s3 {

// ListObjectsV2 result page.
struct ListPage {
  std::vector<std::string> keys;  // <Contents><Key>, entity-decoded, in document order
  bool truncated = false;         // <IsTruncated>true</IsTruncated>
  std::string next_token;         // <NextContinuationToken>
};
ListPage parse_list_objects_v2(std::string_view xml);

// <Error><Code>..</Code><Message>..</Message></Error>; nullopt when the document is not an
// S3 error (including an empty or non-XML body).
struct ErrorBody {
  std::string code;
  std::string message;
};
std::optional<ErrorBody> parse_error(std::string_view xml);

// ListMultipartUploads result page: unfinished uploads as (key, upload id).
struct UploadsPage {
  std::vector<std::pair<std::string, std::string>> uploads;
  bool truncated = false;
  std::string next_key_marker;
  std::string next_upload_id_marker;
};
UploadsPage parse_list_multipart_uploads(std::string_view xml);

// <InitiateMultipartUploadResult><UploadId>.
std::string parse_upload_id(std::string_view xml);

// CompleteMultipartUpload request body; part i (1-based) has ETag etags[i-1].
std::string complete_multipart_body(const std::vector<std::string>& etags);

std::string xml_escape(std::string_view s);
std::string xml_unescape(std::string_view s);  // throws Corrupt on an unknown entity

}  // namespace i2z::s3
