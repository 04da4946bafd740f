// Backward of every op-table entry that has one (op_table.hpp) against
// central differences in double, through plm::testing::check_gradient. The
// loss is L = sum_k <out_k, dout_k> + sum_s dscalar_s * s for random weights,
// so the gradient flowing into the backward is exactly dout.
#include <string>

#include "op_table.hpp"

using namespace plm;
using namespace plm::test::optable;

TEST_CASE("op table: every backward against finite differences in double") {
  Tally t;
  int too_large = 0;
  for (const auto& c : cpu_op_table()) {
    if (c.error_only() || !c.has_backward()) continue;
    // element-by-element differences cost two forwards per element; larger
    // cases of the same op are covered by the reference and backend checks
    if (fd_elements(c) > fd_max_elements) {
      ++too_large;
      continue;
    }
    ++t.entries;
    check_finite_differences(t, c, make_values(c));
  }
  CHECK(t.entries >= 60);
  const std::string line = "op table, finite differences: " + std::to_string(t.entries) + " entries, " +
                           std::to_string(t.checks) + " gradients checked, " + std::to_string(too_large) +
                           " larger entries left to the other checks";
  MESSAGE(line);
}
