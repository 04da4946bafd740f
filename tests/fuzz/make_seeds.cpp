// Writes the binary seeds of the fuzz corpora (docs/fuzzing.md): safetensors
// files made by the library's own writer (and one laid out by hand with the
// dtypes plm reads but does not write), training checkpoints of the checkpoint
// harness's model made by io::save_checkpoint, and gzip-compressed FASTA.
//
//   cmake --build build-fuzz --target plm_fuzz_make_seeds
//   build-fuzz/tests/fuzz/plm_fuzz_make_seeds tests/fuzz/corpus
//
// The text seeds (FASTA, config.json, tokenizer files, tables, metrics) are
// committed as they are.
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "harnesses.hpp"

namespace fs = std::filesystem;
using namespace plm;

namespace {

const char* const fasta_text =
    ">sp|Q0BUP6|RL32_GRABC 50S ribosomal protein L32 OS=Granulibacter bethesdensis\n"
    "MARSVWKGPFVDGYLLNKADAARASGRNEIIKIWSRRSTILPQFVGLTFGVYNGHKFLPV\n"
    "QVTENMVGHKFGEFSPTRTFPGHAADKKAKRG\n"
    ">B0S174 50S ribosomal protein L35\n"
    "MPKMKTHRGSAKRFRRTGTGKLRRFKAYASHLTGKKSAKRIRNLRKGTTVSEADMKRIDKMIP\n"
    ">A6VKC6\n"
    "MSLTNEQLIEAIASKSVSEIVELIAAMEEKFGVSAAVAAAAPAAGGAAAAEEKTEFNVVLTEAG\n"
    "ANKVAVIKAVRGATGLGLKEAKDLVESAPANLKEGISKGEAEELKKALEEAGAKVEIK\n";

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() || std::fclose(f) != 0)
    throw std::runtime_error("make_seeds: cannot write " + path.string());
}

template <class T>
Tensor<cpu, T> filled(Shape s, double start, double step) {
  Tensor<cpu, T> t(s);
  for (index_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<T>(start + step * static_cast<double>(i));
  return t;
}

void safetensors_seeds(const fs::path& dir) {
  fs::create_directories(dir);
  // The writer: several dtypes and ranks, metadata, an empty tensor.
  const auto w = filled<float>(Shape{2, 3}, -0.5, 0.25);
  const auto b = filled<double>(Shape{3}, 1, 0.5);
  const auto h = filled<float>(Shape{4}, 0.1, 0.1);
  Tensor<cpu, bf16> hb(Shape{4});
  for (index_t i = 0; i < 4; ++i) hb.data()[i] = bf16(h.data()[i]);
  const auto ids = filled<std::int64_t>(Shape{2, 2}, 5, 1);
  const auto mask = filled<std::uint8_t>(Shape{1, 2, 2}, 0, 1);
  const auto pos = filled<std::int32_t>(Shape{3}, -1, 1);
  const Tensor<cpu, float> none(Shape{0, 3});
  io::SafetensorsWriter sw;
  sw.add<float>("encoder.block.0.layer.0.SelfAttention.q.weight", w.cview());
  sw.add<double>("encoder.final_layer_norm.weight", b.cview());
  sw.add<bf16>("shared.weight", hb.cview());
  sw.add<std::int64_t>("input_ids", ids.cview());
  sw.add<std::uint8_t>("attention_mask", mask.cview());
  sw.add<std::int32_t>("position", pos.cview());
  sw.add<float>("empty", none.cview());
  sw.set_metadata("format", "pt");
  sw.write((dir / "writer.safetensors").string());

  // By hand: F16 and BOOL (read, never written by plm), a scalar, an I16 plm cannot read.
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"half":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},)"
      R"("flags":{"dtype":"BOOL","shape":[3],"data_offsets":[4,7]},"scale":{"dtype":"F32","shape":[],"data_offsets":[8,12]},)"
      R"("short":{"dtype":"I16","shape":[2],"data_offsets":[12,16]}})";
  std::string text = header + std::string((8 - header.size() % 8) % 8, ' ');
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[static_cast<std::size_t>(i)] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  file += text;
  const unsigned char data[16] = {0x00, 0x3c, 0x00, 0xc0,  // F16 1.0, -2.0
                                  1,    0,    1,    0,     // BOOL, one byte padding
                                  0x00, 0x00, 0x80, 0x3f,  // F32 1.0
                                  0x01, 0x00, 0xff, 0xff};  // I16 1, -1
  file.append(reinterpret_cast<const char*>(data), sizeof data);
  write_bytes(dir / "dtypes.safetensors", file);
}

void checkpoint_seeds(const fs::path& dir) {
  fs::create_directories(dir);
  fuzz::CheckpointModel& m = fuzz::checkpoint_model();
  io::TrainingState ts;
  ts.step = 120, ts.seed = 7, ts.epoch = 1, ts.cursor = 345;
  ts.extra = {{"fingerprint", fuzz::CheckpointModel::fingerprint()}, {"best_loss", 2.5}, {"lr", 1e-4}};
  io::save_checkpoint<cpu, float>((dir / "step120.safetensors").string(), m.params, m.state(), ts);
  io::TrainingState first;  // a fresh run's first checkpoint: no extra beyond the fingerprint
  first.extra = {{"fingerprint", fuzz::CheckpointModel::fingerprint()}};
  io::save_checkpoint<cpu, float>((dir / "step0.safetensors").string(), m.params, m.state(), first);
}

void gzip_seeds(const fs::path& dir) {
  fs::create_directories(dir);
  const std::string text = fasta_text;
  write_bytes(dir / "records.fasta.gz", fuzz::gzip(text, 6));
  // bgzip-style: two members, the cut inside a sequence line.
  write_bytes(dir / "two_members.fasta.gz", fuzz::gzip(text, 9, text.size() / 2 + 3));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir, e.g. tests/fuzz/corpus>\n", argv[0]);
    return 2;
  }
  try {
    const fs::path corpus = argv[1];
    safetensors_seeds(corpus / "safetensors");
    checkpoint_seeds(corpus / "checkpoint");
    gzip_seeds(corpus / "fasta_gz_raw");
    std::printf("make_seeds: wrote the binary seeds under %s\n", corpus.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
