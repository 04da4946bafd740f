// Training support: checkpoints (round trip, refusal of mismatched or damaged
// files), JSONL metrics (resume truncation), the progress line.
#include <filesystem>
#include <fstream>
#include <iterator>

#include "ops_test_support.hpp"
#include "plm/io/checkpoint.hpp"
#include "plm/nn/t5.hpp"
#include "plm/train/classification.hpp"
#include "plm/train/metrics.hpp"
#include "plm/train/progress.hpp"
#include "plm/train/run_directory.hpp"

using namespace plm;
using namespace plm::test;
namespace fs = std::filesystem;

namespace {
fs::path temp_dir(const std::string& tag) {
  const fs::path p = fs::temp_directory_path() / ("plm_train_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}
}  // namespace

TEST_CASE("checkpoints: round trip of parameters, state tensors and training state") {
  const fs::path dir = temp_dir("ckpt");
  nn::T5Config c = nn::T5Config::ankh3_tiny();
  nn::Ankh3Model<cpu, float> a(c, 1), b(c, 2);
  Tensor<cpu, float> m1 = random_tensor<float>(Shape{a.params().numel()}, 3), m2(Shape{a.params().numel()});
  io::TrainingState ts;
  ts.step = 1234, ts.seed = 99, ts.epoch = 2, ts.cursor = 17;
  ts.extra = {{"lr", 0.001}, {"note", "x"}};
  const std::string path = (dir / "step.ckpt").string();
  io::save_checkpoint<cpu, float>(path, a.params(), {{"adamw.m", m1.view()}}, ts);
  const auto back = io::load_checkpoint<cpu, float>(path, b.params(), {{"adamw.m", m2.view()}});
  CHECK(back.step == 1234);
  CHECK(back.seed == 99);
  CHECK(back.epoch == 2);
  CHECK(back.cursor == 17);
  CHECK(back.extra["note"] == "x");
  CHECK(std::memcmp(a.params().values().data(), b.params().values().data(), sizeof(float) * a.params().numel()) == 0);
  CHECK(std::memcmp(m1.data(), m2.data(), sizeof(float) * m1.numel()) == 0);
  for (const auto& e : fs::directory_iterator(dir)) CHECK(e.path().filename() == "step.ckpt");  // no temp files left

  // another model shape
  nn::T5Config c2 = c;
  c2.d_ff = 40;
  nn::Ankh3Model<cpu, float> other(c2, 1);
  check_error([&] { io::load_checkpoint<cpu, float>(path, other.params(), {{"adamw.m", m2.view()}}); }, "shapes differ for",
              "DenseReluDense");
  // missing optimizer state, and a state the file lacks
  check_error([&] { io::load_checkpoint<cpu, float>(path, b.params(), {}); }, "has 1 tensor(s) this run does not: state.adamw.m");
  check_error([&] { io::load_checkpoint<cpu, float>(path, b.params(), {{"adamw.m", m2.view()}, {"adamw.v", m2.view()}}); },
              "lacks 1 tensor(s): state.adamw.v");
  // another dtype
  nn::Ankh3Model<cpu, double> d(c, 1);
  check_error([&] { io::load_checkpoint<cpu, double>(path, d.params(), {}); }, "holds f32 tensors but the model is f64");
  // a flipped byte in the data section: refused, and the model is left untouched
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const auto size = static_cast<std::streamoff>(f.tellg());
    f.seekg(size - 7);
    char ch = 0;
    f.read(&ch, 1);
    ch = static_cast<char>(ch ^ 0x5a);
    f.seekp(size - 7);
    f.write(&ch, 1);
  }
  nn::Ankh3Model<cpu, float> fresh(c, 5);
  const auto before = fresh.params().values().data()[0];
  check_error([&] { io::load_checkpoint<cpu, float>(path, fresh.params(), {{"adamw.m", m2.view()}}); }, "is damaged (checksum mismatch)");
  CHECK(fresh.params().values().data()[0] == before);
  // a model file that is not a training checkpoint
  io::SafetensorsWriter w;
  w.add<float>("x", m1.cview());
  w.write((dir / "plain.safetensors").string());
  check_error([&] { io::load_checkpoint<cpu, float>((dir / "plain.safetensors").string(), b.params(), {}); },
              "is not a plm training checkpoint");
  fs::remove_all(dir);
}

TEST_CASE("metrics log: JSON lines, resume drops lines after the checkpoint step and a torn last line") {
  const fs::path dir = temp_dir("metrics");
  const std::string path = (dir / "metrics.jsonl").string();
  {
    train::MetricsLog log(path);
    for (int s = 1; s <= 5; ++s) log.write({{"step", s}, {"loss", 1.0 / s}});
  }
  { std::ofstream(path, std::ios::app) << "{\"step\": 6, \"lo"; }  // killed mid-line
  {
    train::MetricsLog log(path, 3);
    log.write({{"step", 4}, {"loss", 0.3}});
  }
  const auto rows = train::MetricsLog::read(path);
  REQUIRE(rows.size() == 4);
  CHECK(rows[2]["step"] == 3);
  CHECK(rows[3]["loss"] == 0.3);
  { std::ofstream(path, std::ios::app) << "not json\n"; }
  check_error([&] { train::MetricsLog::read(path); }, "metrics.jsonl:5", "not valid JSON");
  fs::remove_all(dir);
}

TEST_CASE("metrics log: never replaced by accident; a damaged line stops a resume and keeps every line") {
  const fs::path dir = temp_dir("metrics_guard");
  const std::string path = (dir / "metrics.jsonl").string();
  {
    train::MetricsLog log(path);
    for (int s = 1; s <= 6; ++s) log.write({{"step", s}, {"loss", 1.0 / s}});
    log.sync();
  }
  // A new log over an existing one is refused, and the file is untouched.
  check_error([&] { train::MetricsLog log(path); }, path, "already holds a log");
  CHECK(train::MetricsLog::read(path).size() == 6);
  // A damaged line in the middle (not a torn last line): the resume is refused naming file and line, nothing is dropped.
  std::string text;
  {
    std::ifstream in(path);
    std::string line;
    int n = 0;
    while (std::getline(in, line)) text += (++n == 3 ? std::string("{\"step\": 3, \"lo") : line) + "\n";
  }
  { std::ofstream(path, std::ios::trunc) << text; }
  check_error([&] { train::MetricsLog log(path, 4); }, "metrics.jsonl:3", "not valid JSON");
  {
    std::ifstream in(path);
    std::string after((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(after == text);
  }
  // A line that is JSON but not an object.
  { std::ofstream(path, std::ios::trunc) << "{\"step\": 1}\n[1, 2]\n"; }
  check_error([&] { train::MetricsLog log(path, 4); }, "metrics.jsonl:2", "not a JSON object");
  // Resuming at a step after every line keeps the file byte for byte and appends.
  { std::ofstream(path, std::ios::trunc) << "{\"step\":1}\n{\"step\":2}\n"; }
  {
    train::MetricsLog log(path, 2);
    log.write({{"step", 3}});
  }
  CHECK(train::MetricsLog::read(path).size() == 3);
  // Deep nesting in a line is refused before parsing.
  { std::ofstream(path, std::ios::trunc) << std::string(100000, '[') << "\n"; }
  check_error([&] { train::MetricsLog::read(path); }, "metrics.jsonl:1", "nested deeper");
  // A device is not a log.
  check_error([&] { train::MetricsLog log("/dev/null"); }, "/dev/null", "character device");
  fs::remove_all(dir);
}

TEST_CASE("run directory: an earlier run is refused without --resume or --overwrite, removed only on request") {
  const fs::path dir = temp_dir("run_dir");
  const std::string out = (dir / "run").string();
  const std::vector<std::string> outputs = {"checkpoint.safetensors", "metrics.jsonl", "model"};
  {
    train::RunDirectory fresh(out, outputs, false, false);  // created
    CHECK(fs::is_directory(out));
    CHECK(fresh.previous().empty());
  }
  { std::ofstream(dir / "run" / "notes.txt") << "mine\n"; }  // unrelated files do not make a run
  CHECK_NOTHROW(train::RunDirectory(out, outputs, false, false));
  { std::ofstream(dir / "run" / "metrics.jsonl") << "{\"step\":1}\n"; }
  fs::create_directories(dir / "run" / "model");
  check_error([&] { train::RunDirectory(out, outputs, false, false); }, out, "holds an earlier run", "metrics.jsonl, model", "--resume",
              "--overwrite");
  check_error([&] { train::RunDirectory(out, outputs, true, true); }, "--resume and --overwrite");
  {
    train::RunDirectory resumed(out, outputs, true, false);
    resumed.remove_previous();  // a no-op without --overwrite
    CHECK(fs::exists(dir / "run" / "metrics.jsonl"));
  }
  {
    train::RunDirectory replaced(out, outputs, false, true);
    CHECK(replaced.previous().size() == 2);
    CHECK(fs::exists(dir / "run" / "metrics.jsonl"));  // nothing removed before set-up is done
    replaced.remove_previous();
    CHECK_FALSE(fs::exists(dir / "run" / "metrics.jsonl"));
    CHECK_FALSE(fs::exists(dir / "run" / "model"));
    CHECK(fs::exists(dir / "run" / "notes.txt"));
  }
  // --out naming a file.
  check_error([&] { train::RunDirectory((dir / "run" / "notes.txt").string(), outputs, false, false); }, "notes.txt",
              "not a directory");
  fs::remove_all(dir);
}

TEST_CASE("progress line: position, metrics, rate and ETA") {
  train::ProgressBar bar(200, "tok/s", 100, stderr);
  const std::string l = bar.line(150, {{"loss", 2.5}});
  CHECK(l.find("[##################......] 150/200") == 0);
  CHECK(l.find("loss 2.5") != std::string::npos);
  CHECK(l.find("tok/s") != std::string::npos);
  CHECK(l.find("ETA") != std::string::npos);
  CHECK(train::format_duration(3725) == "1h02m");
  CHECK(train::format_duration(75) == "1m15s");
  CHECK(train::format_duration(NAN) == "--");
}

TEST_CASE("confusion matrix: accuracy, per-class precision / recall / F1, macro-F1 over present classes") {
  train::ConfusionMatrix m(4);  // class 3 never occurs
  const int truth[] = {0, 0, 0, 1, 1, 2, 2, 2, 2, 0};
  const int pred[] = {0, 0, 1, 1, 0, 2, 2, 0, 2, 0};
  for (int i = 0; i < 10; ++i) m.add(truth[i], pred[i]);
  CHECK(m.total() == 10);
  CHECK(m.accuracy() == doctest::Approx(0.7));
  // class 0: TP 3, FP 2 (a 1 and a 2), FN 1 -> P 3/5, R 3/4, F1 6/9
  CHECK(m.precision(0) == doctest::Approx(0.6));
  CHECK(m.recall(0) == doctest::Approx(0.75));
  CHECK(m.f1(0) == doctest::Approx(2.0 / 3.0));
  // class 1: TP 1, FP 1, FN 1 -> F1 1/2; class 2: TP 3, FP 0, FN 1 -> F1 6/7
  CHECK(m.f1(1) == doctest::Approx(0.5));
  CHECK(m.f1(2) == doctest::Approx(6.0 / 7.0));
  CHECK(m.macro_f1() == doctest::Approx((2.0 / 3.0 + 0.5 + 6.0 / 7.0) / 3.0));
  const auto j = m.to_json({"a", "b", "c", "d"});
  CHECK(j["per_class"][2]["class"] == "c");
  CHECK(j["matrix"][0][1] == 1);
  check_error([&] { m.add(4, 0); }, "class pair (4, 0) outside 0..3");
}

TEST_CASE("check_fingerprint: a resume with other settings names the setting and both values") {
  io::TrainingState ts;
  ts.extra["fingerprint"] = {{"seed", 3}, {"train", "a.fasta"}};
  io::check_fingerprint("ck.safetensors", ts, {{"seed", 3}, {"train", "a.fasta"}});
  check_error([&] { io::check_fingerprint("ck.safetensors", ts, {{"seed", 4}, {"train", "a.fasta"}}); },
              "ck.safetensors was written with seed = 3, this run has 4");
  check_error([&] { io::check_fingerprint("ck.safetensors", ts, {{"lr", 0.1}}); }, "written with lr = null, this run has 0.1");
  // a fingerprint that is not an object (a damaged or foreign file): an error, not nlohmann's type_error
  io::TrainingState odd;
  odd.extra["fingerprint"] = 5;
  check_error([&] { io::check_fingerprint("ck.safetensors", odd, {{"seed", 3}}); }, "ck.safetensors",
              "damaged training state (extra.fingerprint is number, not an object)");
  odd.extra = nlohmann::json::array();
  check_error([&] { io::check_fingerprint("ck.safetensors", odd, {{"seed", 3}}); }, "written with seed = null");
}

TEST_CASE("checkpoints: a key missing from the metadata or of another type names the file and the key") {
  const fs::path dir = temp_dir("keys");
  nn::ParameterSet<cpu, float> ps;
  ps.add("w", Shape{3}, 0.0, 1.5);
  ps.allocate();
  ps.init(1);
  io::TrainingState ts;
  ts.extra = {{"best_epoch", 3}, {"stopped", "no"}};
  const std::string path = (dir / "best.safetensors").string();
  io::save_checkpoint<cpu, float>(path, ps, {}, ts);
  const auto back = io::load_checkpoint<cpu, float>(path, ps, {});
  // what nm_finetune reads from its best.safetensors: present, absent, of another type
  CHECK(io::extra_value<long>(path, back, "best_epoch") == 3);
  check_error([&] { io::extra_value<double>(path, back, "best_valid_loss"); }, path, "the training state has no 'best_valid_loss'");
  check_error([&] { io::extra_value<bool>(path, back, "stopped"); }, path, "extra.stopped = \"no\" has the wrong type");
  check_error([&] { io::extra_value<double>(path, back, "stopped"); }, path, "extra.stopped = \"no\" has the wrong type");
  io::TrainingState numbers;
  numbers.extra = {{"big", 1e300}, {"many", 5000000000}, {"negative", -1}};
  check_error([&] { io::extra_value<long>(path, numbers, "big"); }, "extra.big = 1e+300 has the wrong type");  // no float-to-int cast
  check_error([&] { io::extra_value<int>(path, numbers, "many"); }, "extra.many = 5000000000 has the wrong type");
  check_error([&] { io::extra_value<unsigned>(path, numbers, "negative"); }, "extra.negative = -1 has the wrong type");
  CHECK(io::extra_value<long>(path, numbers, "many") == 5000000000);
  CHECK(io::extra_value<double>(path, numbers, "negative") == -1.0);

  // A file with the checkpoint's format but hand-made metadata.
  Tensor<cpu, float> w(Shape{3});
  std::copy(ps.value(0).data(), ps.value(0).data() + 3, w.data());
  auto write = [&](const std::string& crc32, const std::string& state) {
    io::SafetensorsWriter f;
    f.add<float>("model.w", w.cview());
    f.set_metadata("plm.checkpoint", "plm-training-checkpoint-1");
    f.set_metadata("plm.dtype", "f32");
    f.set_metadata("plm.crc32", crc32);
    f.set_metadata("plm.state", state);
    f.write(path);
  };
  const std::string state = R"({"step": 1, "seed": 1, "epoch": 0, "cursor": 0})";
  write("{}", state);  // no checksum for the tensor: said so, not read through a missing key
  check_error([&] { io::load_checkpoint<cpu, float>(path, ps, {}); }, path, "tensor 'model.w' has no checksum in the metadata");
  write(R"({"model.w": "1234"})", state);
  check_error([&] { io::load_checkpoint<cpu, float>(path, ps, {}); }, path, "tensor 'model.w' has no checksum in the metadata");
  const std::string crc = nlohmann::json{{"model.w", io::detail::crc32(w.data(), 3 * sizeof(float))}}.dump();
  write(crc, state);
  CHECK(io::load_checkpoint<cpu, float>(path, ps, {}).step == 1);
  write(crc, R"({"step": "1", "seed": 1, "epoch": 0, "cursor": 0})");  // a number field holding a string
  check_error([&] { io::load_checkpoint<cpu, float>(path, ps, {}); }, path, "damaged training state", "step");
  write(crc, R"({"seed": 1, "epoch": 0, "cursor": 0})");
  check_error([&] { io::load_checkpoint<cpu, float>(path, ps, {}); }, path, "damaged training state", "step");
  write(crc, R"({"step": 1, "seed": 1, "epoch": 0, "cursor": 0, "extra": [1]})");
  check_error([&] { io::load_checkpoint<cpu, float>(path, ps, {}); }, path, "extra is array, not an object");
  fs::remove_all(dir);
}
