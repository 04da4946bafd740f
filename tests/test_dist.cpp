// dist/ in one process: the single-process communicator, parameter shards,
// optimizers over a range, DataParallel's accumulation, norm, clipping and
// checkpoints, sharded streams and the result folding the programs use.
// The collectives across ranks are tested under mpirun (mpi_collectives.cpp,
// data_parallel_mpi.sh).
#include <cstdlib>
#include <cstring>

#include "ops_test_support.hpp"
#include "plm/dist/data_parallel.hpp"
#include "plm/dist/environment.hpp"
#include "plm/nn/linear.hpp"
#include "plm/optim/optimizer.hpp"
#include "plm/samplers/pretrain_stream.hpp"
#include "plm/train/distributed.hpp"

using namespace plm;
using namespace plm::test;

namespace {
// A set of tensors of very different sizes: a matrix, vectors and a large matrix.
void fill_set(nn::ParameterSet<cpu, double>& ps) {
  ps.add("a.weight", Shape{4, 3}, 0.5);
  ps.add("a.bias", Shape{3}, 0.5);
  ps.add("b.weight", Shape{8, 6}, 0.5);
  ps.add("norm.weight", Shape{6}, 0.0, 1.0);
  ps.add("c.weight", Shape{6, 2}, 0.5);
  ps.allocate();
  ps.init(5);
}
void random_grads(nn::ParameterSet<cpu, double>& ps, std::uint64_t seed) {
  Philox rng(seed, 0);
  for (index_t i = 0; i < ps.numel(); ++i) ps.grads().data()[i] = rng.normal();
}
double max_abs_diff(const double* a, const double* b, index_t n) {
  double w = 0;
  for (index_t i = 0; i < n; ++i) w = std::max(w, std::abs(a[i] - b[i]));
  return w;
}
bool same_bits(const double* a, const double* b, index_t n) { return std::memcmp(a, b, static_cast<std::size_t>(n) * sizeof(double)) == 0; }
}  // namespace

TEST_CASE("SingleProcess: every collective is the identity; helpers at world size 1") {
  dist::SingleProcess c;
  CHECK(c.rank() == 0);
  CHECK(c.size() == 1);
  CHECK(c.where().empty());
  std::vector<double> x{1.5, -2.0};
  c.reduce_scatter(x.data(), {2}, DType::f64, "t");
  c.all_gather(x.data(), {2}, DType::f64, "t");
  CHECK(x == std::vector<double>{1.5, -2.0});
  std::vector<double> all(2);
  c.gather(x.data(), all.data(), {2}, DType::f64, 0, "t");
  CHECK(all == x);
  CHECK(dist::sum_over_ranks(c, {3.0, 4.0}, "t") == std::vector<double>{3.0, 4.0});
  CHECK(dist::gather_numbers(c, {7.0}, "t") == std::vector<std::vector<double>>{{7.0}});
  std::string s = "kept";
  dist::broadcast_string(c, s, 0, "t");
  CHECK(s == "kept");
  check_error([&] { c.all_gather(x.data(), {1, 1}, DType::f64, "the check"); }, "the check: 2 segments for 1 rank");
  check_error([&] { c.broadcast(x.data(), 8, 1, "the check"); }, "root 1 outside the single process");
  check_error([&] { c.set_timeout_seconds(0); }, "timeout 0 s must be positive");
  CHECK(dist::even_counts(10, 3) == std::vector<index_t>{4, 3, 3});
  CHECK(dist::even_counts(2, 3) == std::vector<index_t>{1, 1, 0});
}

TEST_CASE("Environment: no launcher, no MPI; a launcher's world size is read, a broken one ignored") {
  for (const char* k : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMIX_RANK"}) unsetenv(k);
  CHECK(dist::launcher_world_size() == 0);
  int argc = 1;
  char name[] = "plm_tests";
  char* args[] = {name, nullptr};
  char** argv = args;
  {
    dist::Environment env(argc, argv);
    CHECK(std::string(env.world().name()) == "single process");
    CHECK(env.lead());
  }
  setenv("PMI_SIZE", "4", 1);
  CHECK(dist::launcher_world_size() == 4);
  setenv("PMI_SIZE", "4x", 1);
  CHECK(dist::launcher_world_size() == 0);
  unsetenv("PMI_SIZE");
  setenv("PLM_DIST_TIMEOUT", "soon", 1);
  check_error([&] { dist::Environment env(argc, argv); }, "PLM_DIST_TIMEOUT='soon' is not a positive number of seconds");
  setenv("PLM_DIST_TIMEOUT", "2.5", 1);
  {
    dist::Environment env(argc, argv);
    CHECK(env.world().timeout_seconds() == 2.5);
  }
  unsetenv("PLM_DIST_TIMEOUT");
}

TEST_CASE("shard_parameters: whole tensors, contiguous, balanced by elements, every parameter once") {
  nn::ParameterSet<cpu, double> ps;
  fill_set(ps);  // sizes 12, 3, 48, 6, 12 = 81
  for (int parts : {1, 2, 3, 4, 5, 7}) {
    const auto s = dist::shard_parameters(ps, parts);
    REQUIRE(static_cast<int>(s.size()) == parts);
    CHECK(s.front().begin == 0);
    CHECK(s.back().end == ps.size());
    for (std::size_t r = 1; r < s.size(); ++r) CHECK(s[r].begin == s[r - 1].end);
  }
  const auto two = dist::shard_parameters(ps, 2);
  CHECK(two[0].end == 3);  // b.weight starts at 15 < 40.5, so it joins the first shard: 63 and 18 elements
  CHECK(optim::range_numel(ps, two[0]) == 63);
  CHECK(optim::range_numel(ps, two[1]) == 18);
}

TEST_CASE("optimizers over parameter ranges: two shards step exactly as one optimizer over all") {
  for (const char* kind : {"adamw", "adafactor", "adafactor-relative"}) {
    CAPTURE(kind);
    nn::ParameterSet<cpu, double> whole, split;
    fill_set(whole), fill_set(split);
    optim::ParamGroups groups;
    groups.add("b.", {3.0, true});
    auto full = optim::make_optimizer<cpu, double>(kind, whole, {0.01}, groups);
    const auto shards = dist::shard_parameters(split, 3);
    std::vector<optim::Optimizer<cpu, double>> parts;
    for (const auto& r : shards) parts.push_back(optim::make_optimizer<cpu, double>(kind, split, {0.01}, groups, r));
    for (int step = 0; step < 4; ++step) {
      random_grads(whole, 10 + step), random_grads(split, 10 + step);
      full.step(1e-2);
      for (auto& p : parts) p.step(1e-2);
    }
    CHECK(same_bits(whole.values().data(), split.values().data(), whole.numel()));
    // The shards' state, end to end, is the whole optimizer's state.
    const auto fs = full.state();
    for (std::size_t k = 0; k < fs.size(); ++k) {
      std::vector<double> joined;
      for (auto& p : parts) {
        const auto v = p.state()[k].second;
        joined.insert(joined.end(), v.data(), v.data() + v.numel());
      }
      REQUIRE(static_cast<index_t>(joined.size()) == fs[k].second.numel());
      CHECK(same_bits(joined.data(), fs[k].second.data(), fs[k].second.numel()));
    }
  }
  nn::ParameterSet<cpu, double> ps;
  fill_set(ps);
  check_error([&] { optim::make_optimizer<cpu, double>("adamw", ps, {}, {}, nn::ParamRange{2, 9}); },
              "parameter range [2, 9) outside the set's 5 parameters");
}

TEST_CASE("DataParallel in one process: micro-batches added in order, global norm, clipping, scale, NaN named") {
  nn::ParameterSet<cpu, double> ps;
  fill_set(ps);
  dist::SingleProcess c;
  dist::DataParallel<cpu, double> dp(c, ps, {false, 3});
  CHECK(dp.global_micro_batches() == 3);
  CHECK(dp.loss_weight() == doctest::Approx(1.0 / 3));
  CHECK(dp.micro_key(5, 2) == 17);
  CHECK(dp.optimizer_range().size() == ps.size());
  // Three micro-batch gradients, added ((g0 + g1) + g2).
  std::vector<std::vector<double>> g;
  for (int m = 0; m < 3; ++m) {
    random_grads(ps, 100 + m);
    g.emplace_back(ps.grads().data(), ps.grads().data() + ps.numel());
    dp.micro_batch_done();
    if (m < 2) CHECK(ps.grads().data()[0] == 0.0);  // each backward starts from zero
  }
  std::vector<double> want(static_cast<std::size_t>(ps.numel()));
  double sq = 0;
  for (std::size_t i = 0; i < want.size(); ++i) want[i] = ((g[0][i] + g[1][i]) + g[2][i]) * 0.5;
  for (index_t p = 0; p < ps.size(); ++p) {
    double s = 0;
    for (index_t i = ps.entry(p).offset; i < ps.entry(p).offset + ps.entry(p).shape.numel(); ++i)
      s += want[static_cast<std::size_t>(i)] * want[static_cast<std::size_t>(i)];
    sq += s;
  }
  const double norm = dp.reduce_gradients(0.5, 0.5);  // scaled by 0.5, then clipped to norm 0.5
  CHECK(norm == doctest::Approx(std::sqrt(sq)).epsilon(1e-15));
  REQUIRE(norm > 0.5);
  for (std::size_t i = 0; i < want.size(); ++i) want[i] *= 0.5 / norm;
  CHECK(max_abs_diff(ps.grads().data(), want.data(), ps.numel()) < 1e-15);
  check_error([&] { dp.micro_batch_done(); }, "called 4 times in a step of 3 micro-batches");
  dp.finish_step();
  CHECK(ops<cpu>::sum_squares<double>(ps.grads()) == 0.0);
  check_error([&] { dp.reduce_gradients(1.0); }, "0 of 3 micro-batches were done this step");
  for (int m = 0; m < 3; ++m) {
    random_grads(ps, 200 + m);
    if (m == 1) ps.grad("b.weight").data()[7] = NAN;
    dp.micro_batch_done();
  }
  check_error([&] { dp.reduce_gradients(1.0); }, "the gradient of 'b.weight' contains NaN or infinity");
}

TEST_CASE("DataParallel checkpoints: rank 0's file in io::save_checkpoint's format, resumed with its state") {
  TempDir tmp;
  const std::string path = tmp.file("ckpt.safetensors");
  nn::ParameterSet<cpu, double> ps, back;
  fill_set(ps), fill_set(back);
  dist::SingleProcess c;
  dist::DataParallel<cpu, double> dp(c, ps, {true, 1}), dp2(c, back, {true, 1});
  auto opt = optim::make_optimizer<cpu, double>("adamw", ps, {}, {}, dp.optimizer_range());
  random_grads(ps, 1);
  opt.step(1e-2);
  CHECK_FALSE(dp.resume(path, opt.named_state()).has_value());  // no file yet
  io::TrainingState ts{3, 9, 1, 4, {{"k", "v"}}};
  dp.save_checkpoint(path, opt.named_state(), ts);
  auto opt2 = optim::make_optimizer<cpu, double>("adamw", back, {}, {}, dp2.optimizer_range());
  bool checked = false;
  const auto got = dp2.resume(path, opt2.named_state(), [&](const io::TrainingState& t) { checked = t.step == 3; });
  REQUIRE(got.has_value());
  CHECK(checked);
  CHECK(got->cursor == 4);
  CHECK(got->extra.at("k") == "v");
  CHECK(same_bits(ps.values().data(), back.values().data(), ps.numel()));
  CHECK(same_bits(opt.state()[0].second.data(), opt2.state()[0].second.data(), ps.numel()));
  // A refusing check stops the resume with its own message.
  check_error([&] { dp2.resume(path, opt2.named_state(), [](const io::TrainingState&) { PLM_FAIL("fingerprint differs"); }); },
              "fingerprint differs");
  // The file is what io::load_checkpoint reads.
  nn::ParameterSet<cpu, double> plain;
  fill_set(plain);
  auto opt3 = optim::make_optimizer<cpu, double>("adamw", plain);
  CHECK(io::load_checkpoint(path, plain, opt3.named_state()).step == 3);
}

TEST_CASE("ExampleStream::shard: two ranks take alternate batches of the one-process stream, one cursor") {
  TempDir tmp;
  const std::string fasta = tmp.file("a.fasta");
  {
    std::string text;
    Philox rng(3, 0);
    const char* aa = "ACDEFGHIKLMNPQRSTVWY";
    for (int r = 0; r < 120; ++r) {
      text += ">p" + std::to_string(r) + "\n";
      const int n = 10 + static_cast<int>(rng.below(50));
      for (int i = 0; i < n; ++i) text += aa[rng.below(20)];
      text += "\n";
    }
    write_file(fasta, text);
  }
  samplers::PretrainStreamOptions o;
  o.train = fasta, o.pool = 25, o.batching.token_budget = 256, o.seed = 4;
  const data::Vocabulary vocab = data::Vocabulary::ankh3();
  auto make = [&] { return samplers::PretrainStream(o, vocab, samplers::Ankh3Sampler({}, samplers::ankh3_tokens(vocab))); };
  auto one = make(), r0 = make(), r1 = make();
  r0.shard(0, 2), r1.shard(1, 2);
  check_error([&] { r1.shard(2, 2); }, "shard: rank 2 of 2");
  for (int step = 0; step < 40; ++step) {  // crosses pools and an epoch
    const auto a = one.next();
    const auto ra = one.pool().records;
    const auto b = one.next();
    const auto rb = one.pool().records;
    const auto x = r0.next();
    const auto rx = r0.pool().records;
    const auto y = r1.next();
    const auto ry = r1.pool().records;
    auto records = [](const std::vector<index_t>& rows, const std::vector<std::uint64_t>& rec) {
      std::vector<std::uint64_t> v;
      for (index_t i : rows) v.push_back(rec[static_cast<std::size_t>(i)]);
      return v;
    };
    CHECK(records(a, ra) == records(x, rx));
    CHECK(records(b, rb) == records(y, ry));
    CHECK(r0.cursor() == one.cursor());
    CHECK(r1.cursor() == one.cursor());
  }
  CHECK(one.cursor().epoch >= 1);
  // A cursor saved on rank 1 continues rank 0 where the job stands.
  io::TrainingState ts;
  r1.save(ts);
  auto again = make();
  again.shard(0, 2);
  again.restore(ts);
  const auto next_one = one.next();
  const auto rec_one = one.pool().records[static_cast<std::size_t>(next_one.front())];
  const auto next_again = again.next();
  CHECK(again.pool().records[static_cast<std::size_t>(next_again.front())] == rec_one);
}

TEST_CASE("MultiTaskResult numbers round trip; folding over ranks in one process; confusion counts") {
  objectives::MultiTaskResult r;
  r.total = 3.25;
  r.tasks.push_back({"nlu", 1.0, 2.5, 40, 10, 30, 9});
  r.tasks.push_back({"s2s", 0.5, 1.5, 20, 5, 18, 4});
  const auto back = objectives::MultiTaskResult::from_numbers(r.numbers(), {"nlu", "s2s"});
  CHECK(back.total == 3.25);
  CHECK(back.tasks[1].name == "s2s");
  CHECK(back.tasks[1].residue_correct == 4);
  CHECK(back.tasks[0].loss == 2.5);
  check_error([&] { objectives::MultiTaskResult::from_numbers({1.0, 2.0}, {"nlu"}); }, "2 numbers for 1 tasks");
  dist::SingleProcess c;
  const auto folded = train::fold_over_ranks(c, r, {{"nlu", 1.0}, {"s2s", 0.5}}, "t");
  CHECK(folded.tasks[0].tokens == 40);
  CHECK(train::fold_over_ranks(c, {}, {{"nlu", 1.0}}, "t").tasks.empty());  // a rank without batches adds nothing
  train::ConfusionMatrix cm(3);
  cm.add(1, 2, 5);
  cm.add(1, 2);
  CHECK(cm.count(1, 2) == 6);
  check_error([&] { cm.add(0, 0, -1); }, "count -1 negative");
  train::ClassifierEvaluation mine;
  mine.loss = 0.5, mine.cm = cm;
  const auto e = train::sum_over_ranks(c, mine, "t");
  CHECK(e.cm.count(1, 2) == 6);
  // Held-out batches shared by the ranks: at world size 1 every batch is computed here, in order.
  std::vector<std::size_t> seen;
  const auto rows = train::shared_batch_rows(c, 3, 2, "t", [&](std::size_t b) {
    seen.push_back(b);
    return std::vector<double>{double(b), 1.0};
  });
  CHECK(seen == std::vector<std::size_t>{0, 1, 2});
  CHECK(rows[2] == std::vector<double>{2.0, 1.0});
  check_error([&] { train::shared_batch_rows(c, 1, 3, "the rows", [](std::size_t) { return std::vector<double>{1.0}; }); },
              "the rows: batch 0 gives 1 numbers, not 3");
  const auto v = train::evaluate_shared(c, 2, {{"nlu", 1.0}, {"s2s", 0.5}}, "t", [&](std::size_t b) {
    objectives::MultiTaskResult x = r;
    x.tasks[0].tokens += static_cast<std::int64_t>(b);
    return x;
  });
  objectives::MultiTaskResult want = r, second = r;
  second.tasks[0].tokens += 1;
  want.add(second);
  CHECK(v.total == want.total);
  CHECK(v.tasks[0].tokens == 81);
  CHECK(v.tasks[0].loss == want.tasks[0].loss);
}
