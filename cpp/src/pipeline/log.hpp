// Warnings raised on worker threads, collected and handed to Python in batches by the
// progress callback (so no worker ever needs the GIL).
#pragma once
#include <string>
#include <vector>

namespace i2z {

void log_warning(std::string message);
std::vector<std::string> take_warnings();

}  // namespace i2z
