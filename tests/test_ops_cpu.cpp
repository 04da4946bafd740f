// ops<cpu> through the op table (op_table.hpp): every entry against its naive
// reference in float and double, the float backward against the double one,
// the same bits with one and two threads, in-place use, and the errors each
// op raises. test_ops_gradients.cpp runs the finite differences of the same
// table; test_cuda.cpp runs it on the GPU against the CPU.
#include <set>
#include <string>

#include "op_table.hpp"

using namespace plm;
using namespace plm::test::optable;

const std::vector<OpCase<cpu>>& plm::test::optable::cpu_op_table() {
  static const std::vector<OpCase<cpu>> table = op_table<cpu>();
  return table;
}

namespace {

void report(const Tally& t, const std::string& what) {
  const std::string line =
      "op table, " + what + ": " + std::to_string(t.entries) + " entries, " + std::to_string(t.checks) + " checks";
  MESSAGE(line);
}

}  // namespace

TEST_CASE("op table: every entry against its naive reference, in float and double") {
  Tally t;
  for (const auto& c : cpu_op_table()) {
    if (c.error_only()) continue;
    ++t.entries;
    const Values v = make_values(c);
    check_reference<float>(t, c, v);
    check_reference<double>(t, c, v);
  }
  report(t, "naive reference");
}

TEST_CASE("op table: results do not depend on the number of CPU threads") {
  Tally t;
  for (const auto& c : cpu_op_table()) {
    if (c.error_only()) continue;
    ++t.entries;
    const Values v = make_values(c);
    check_threads<float>(t, c, v);
    check_threads<double>(t, c, v);
  }
  report(t, "1 against 2 threads");
}

TEST_CASE("op table: outputs computed in the buffer of an input match the out-of-place results") {
  Tally t;
  for (const auto& c : cpu_op_table()) {
    if (c.aliases().empty()) continue;
    ++t.entries;
    const Values v = make_values(c);
    check_aliases<cpu, float>(t, c, v);
    check_aliases<cpu, double>(t, c, v);
  }
  CHECK(t.entries >= 10);
  report(t, "in place");
}

TEST_CASE("op table: bad shapes, ids and arguments raise errors naming the op and the shapes") {
  Tally t;
  for (const auto& c : cpu_op_table()) {
    if (c.errors().empty()) continue;
    ++t.entries;
    const Values v = make_values(c);
    check_errors<cpu, float>(t, c, v);
    check_errors<cpu, double>(t, c, v);
  }
  report(t, "error cases");
}

TEST_CASE("op table: covers every op of ops<cpu>, and every op with a backward has a finite-difference entry") {
  // The primitives of ops<cpu>; the backward ops (masked_softmax_backward,
  // rms_norm_backward, ..., dropout_backward) run as the backward of these entries.
  const std::set<std::string> ops_of_cpu = {"gemm_strided_batched",
                                            "matmul",
                                            "add",
                                            "sub",
                                            "mul",
                                            "scale",
                                            "axpy",
                                            "add_row",
                                            "mul_row",
                                            "sum_rows",
                                            "transpose12",
                                            "copy",
                                            "fill",
                                            "convert",
                                            "masked_softmax",
                                            "rms_norm",
                                            "layer_norm",
                                            "gelu",
                                            "silu",
                                            "relu",
                                            "gated",
                                            "gather",
                                            "scatter_add",
                                            "sum",
                                            "sum_squares",
                                            "all_finite",
                                            "dropout",
                                            "cross_entropy",
                                            "adamw_update",
                                            "adafactor_update"};
  std::set<std::string> in_table, with_backward, with_fd;
  for (const auto& c : cpu_op_table()) {
    if (c.error_only()) continue;
    in_table.insert(c.op());
    if (!c.has_backward()) continue;
    with_backward.insert(c.op());
    if (fd_elements(c) <= fd_max_elements) with_fd.insert(c.op());
  }
  for (const std::string& op : ops_of_cpu) {
    INFO("op ", op);
    CHECK(in_table.count(op) == 1);
  }
  for (const std::string& op : with_backward) {
    INFO("op ", op, " has a backward but no entry small enough for finite differences");
    CHECK(with_fd.count(op) == 1);
  }
  CHECK(with_backward.size() >= 20);
}

TEST_CASE("op table: the cross-backend check, run with the CPU as the other backend, finds no difference") {
  // The same path test_cuda.cpp takes with plm::cuda: both runs, the aliases and
  // the error messages compared; it also shows a second run repeats the first.
  Tally t;
  for (const auto& c : cpu_op_table()) {
    ++t.entries;
    const Values v = make_values(c);
    check_backend<cpu, float>(t, c, v);
    check_backend<cpu, double>(t, c, v);
  }
  report(t, "cpu as the other backend");
}
