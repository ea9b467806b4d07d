// Per-image records as JSON, saved per committed shard so that resume (and distributed tasks)
// can rebuild the side-car rows of work done earlier.
#pragma once
#include <span>
#include <string>
#include <vector>

#include "i2z/convert.hpp"

namespace i2z {

std::string records_to_json(std::span<const ImageRecord> records);
std::vector<ImageRecord> records_from_json(const std::string& text);

// Probe results (distributed probing: workers probe, the planner reads). probes_from_json()
// appends to `probed` and checks each entry's path against files[probed.size()].
struct Probed;
std::string probes_to_json(std::span<const std::string> files, std::span<const Probed> probed);
void probes_from_json(const std::string& text, std::span<const std::string> files, std::vector<Probed>& probed);

}  // namespace i2z
