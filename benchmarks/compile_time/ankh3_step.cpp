// A small Ankh3 training program, the unit of benchmarks/compile_time/run.sh:
// a model, the multi-task loss, AdamW with clipping, three steps on a toy batch.
// Compiled header-only and with PLM_PRECOMPILED (the common aliases from
// plm/precompiled.cpp), it shows what one training program costs to compile.
#include <plm/nn/t5.hpp>
#include <plm/objectives/multitask.hpp>
#include <plm/optim/adamw.hpp>
#include <plm/optim/clip.hpp>
#include <plm/plm.hpp>
#include <cstdio>
using namespace plm;
int main() {
  nn::T5Config c = nn::T5Config::ankh3_tiny();
  nn::Ankh3Model<cpu, float> m(c, 1);
  const index_t Bn = 2, S = 6, Tn = 4;
  Tensor<cpu, std::int32_t> ids(Shape{Bn, S}), dec(Shape{Bn, Tn}), labels(Shape{Bn, Tn});
  Tensor<cpu, std::uint8_t> valid(Shape{Bn, S});
  for (index_t i = 0; i < ids.numel(); ++i) ids.data()[i] = 3 + i % 20, valid.data()[i] = 1;
  for (index_t i = 0; i < dec.numel(); ++i) dec.data()[i] = 3 + i % 7, labels.data()[i] = 3 + (i + 1) % 7;
  Tensor<cpu, float> logits(Shape{Bn, Tn, c.vocab_size});
  nn::Ankh3Model<cpu, float>::Cache cache;
  objectives::MultiTask<cpu, float> loss({{"nlu", 1.0}, {"s2s", 1.0}}, {3, 4, 5}, -100, 0.0);
  optim::AdamW<cpu, float> opt(m.params());
  std::vector<std::int32_t> task{0, 1};
  for (int step = 0; step < 3; ++step) {
    m.forward(ids.cview(), valid.cview(), dec.cview(), logits.view(), cache);
    const auto r = loss(logits.cview(), labels.cview(), task, logits.view());
    m.backward(logits.cview(), cache);
    optim::clip_grad_norm(m.params(), 1.0);
    opt.step(1e-3);
    m.params().zero_grad();
    std::printf("step %d loss %.4f\n", step, r.total);
  }
}
