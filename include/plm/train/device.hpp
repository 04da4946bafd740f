#pragma once
// Choosing the backend at run time, for programs built for both.
//
//   train::DeviceOptions dev;
//   train::add_device_options(cli, dev);            // --device cpu|cuda, --gpu N, --gpu-math tf32|fp32|bf16
//   return train::run_on_device(dev, [&](auto backend) { return run<decltype(backend)>(opts); });
//
// With B = plm::cuda the callable runs inside a CudaContext for the chosen GPU.
// A program compiled without the CUDA backend (no PLM_HAS_CUDA, which the
// plm::cuda CMake target defines) rejects --device cuda with a clear message.
#include <cstdio>
#include <string>

#include "plm/backend/tags.hpp"
#include "plm/core/error.hpp"
#include "plm/train/cli.hpp"
#if defined(PLM_HAS_CUDA)
#include "plm/cuda.hpp"
#endif

namespace plm::train {

struct DeviceOptions {
  std::string device = "cpu";  // cpu or cuda
  int gpu = -1;                // CUDA device index; -1: the rank's index on its machine (0 in one process)
  std::string math = "tf32";   // float GEMMs on the GPU: fp32, tf32 or bf16
};

// Adds --device, --gpu and --gpu-math to a command-line parser with CLI11's
// add_option(name, variable, description) (a CLI::App or an option group),
// their values checked while parsing (plm/train/cli.hpp).
template <class App>
void add_device_options(App& app, DeviceOptions& d) {
  app.add_option("--device", d.device, "cpu or cuda (checkpoints resume on either)")->check(cli::one_of({"cpu", "cuda"}));
  app.add_option("--gpu", d.gpu, "CUDA device index (default -1: under mpirun / srun the rank's index on its machine, else 0)")
      ->check(cli::non_negative());
  app.add_option("--gpu-math", d.math, "float GEMMs on the GPU: fp32, tf32 or bf16 (fp32 accumulation)")->check(cli::one_of({"fp32", "tf32", "bf16"}));
}

// The "run" options every training program shares, into the option group
// `group` of a CLI11 parser: --out, --resume, --overwrite, --eval-every,
// --checkpoint-every, --seed, --threads and the device options. O is the
// program's options (members out, resume, overwrite, eval_every,
// checkpoint_every, seed, threads, device).
template <class Group, class O>
void add_run_options(Group& r, O& o) {
  r.add_option("--out", o.out, "output directory"), r.add_flag("--resume", o.resume, "continue from --out/checkpoint.safetensors");
  r.add_flag("--overwrite", o.overwrite, "replace an earlier run in --out (without it, or --resume, an earlier run is refused)");
  r.add_option("--eval-every", o.eval_every)->check(cli::at_least(1));
  r.add_option("--checkpoint-every", o.checkpoint_every)->check(cli::at_least(1));
  r.add_option("--seed", o.seed)->check(cli::non_negative());
  r.add_option("--threads", o.threads, "CPU threads (0 = all)")->check(cli::non_negative());
  add_device_options(r, o.device);
}

// True when this program was built with the CUDA backend (a GPU may still be absent).
inline constexpr bool built_with_cuda() {
#if defined(PLM_HAS_CUDA)
  return true;
#else
  return false;
#endif
}

template <class F>
auto run_on_device(const DeviceOptions& d, F&& f) {
  if (d.device == "cpu") return f(cpu{});
  PLM_CHECK(d.device == "cuda", "--device: unknown '", d.device, "' (cpu or cuda)");
#if defined(PLM_HAS_CUDA)
  CudaMath math = CudaMath::tf32;
  if (d.math == "fp32") math = CudaMath::fp32;
  else if (d.math == "bf16") math = CudaMath::bf16;
  else PLM_CHECK(d.math == "tf32", "--gpu-math: unknown '", d.math, "' (fp32, tf32 or bf16)");
  const int index = d.gpu < 0 ? 0 : d.gpu;
  CudaContext gpu(index, math);
  std::fprintf(stderr, "plm: running on %s (GPU %d, %s GEMMs)\n", gpu.device_name().c_str(), index, d.math.c_str());
  return f(cuda{});
#else
  PLM_FAIL("--device cuda: this program was built without the CUDA backend; configure with -DPLM_CUDA=ON and a CUDA toolkit");
#endif
}

}  // namespace plm::train
