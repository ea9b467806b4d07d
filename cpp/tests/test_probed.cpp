// The compact probe record: every shape and error comes back as it was set, copies included.
#include <gtest/gtest.h>

#include "pipeline/sources.hpp"

namespace i2z {
namespace {

Probed probed(std::uint64_t h, std::uint64_t w, std::uint32_t c, std::vector<std::uint64_t> shape) {
  Probed p;
  p.height = h;
  p.width = w;
  p.channels = c;
  p.set_shape(std::move(shape));
  return p;
}

TEST(Probed, ShapesRoundTrip) {
  using V = std::vector<std::uint64_t>;
  for (const V& s : {V{}, V{7, 5}, V{7, 5, 3}, V{3, 7, 5}, V{2, 3, 7, 5}, V{7, 5, 1}, V{5, 7}, V{1ull << 40, 5}}) {
    const Probed p = probed(7, 5, 3, s);
    EXPECT_EQ(p.shape(), s);
    const Probed copy = p;  // NOLINT(performance-unnecessary-copy-initialization)
    EXPECT_EQ(copy.shape(), s);
  }
}

TEST(Probed, ErrorOnlyWhenSet) {
  Probed p = probed(7, 5, 1, {7, 5});
  EXPECT_EQ(p.error(), "");
  p.set_error("bad header");
  Probed q;
  q = p;
  p.set_error("");
  EXPECT_EQ(p.error(), "");
  EXPECT_EQ(q.error(), "bad header");
  EXPECT_EQ(q.shape(), (std::vector<std::uint64_t>{7, 5}));
}

}  // namespace
}  // namespace i2z
