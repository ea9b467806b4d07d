// The one place that turns a store location into a backend (design §6: pass one Store
// object, never "if s3 ... else file" at the call sites).
#include "i2z/error.hpp"
#include "i2z/s3.hpp"

namespace i2z {

std::shared_ptr<Store> open_store_url(const std::string& path_or_url,
                                      const std::map<std::string, std::string>& storage_options) {
  if (is_s3_url(path_or_url)) {
    S3Options o = s3_options_from_env();
    apply_storage_options(o, storage_options);
    return open_s3_store(path_or_url, o);
  }
  if (path_or_url.starts_with("file://")) {
    if (!storage_options.empty())
      fail(ErrorKind::Value, "storage_options apply only to s3:// stores, not to '" + path_or_url + "'");
    return open_local_store(path_or_url.substr(7));
  }
  if (path_or_url.find("://") != std::string::npos)
    fail(ErrorKind::Value, "unsupported store URL '" + path_or_url + "' (use a local path or s3://bucket/prefix)");
  if (!storage_options.empty())
    fail(ErrorKind::Value, "storage_options apply only to s3:// stores, not to the local path '" + path_or_url + "'");
  return open_local_store(path_or_url);
}

}  // namespace i2z
