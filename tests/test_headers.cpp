// Backend-generic headers (layers, objectives, optimizers, samplers) must not
// pull in a backend: a program that trains only on the GPU then never parses
// Eigen. They come first in this file, before anything that includes Eigen;
// the backend arrives with plm/plm.hpp below, before anything is instantiated.
#include "plm/nn/bert.hpp"
#include "plm/nn/esm.hpp"
#include "plm/nn/mlm_head.hpp"
#include "plm/nn/pair_attention.hpp"
#include "plm/nn/pooling.hpp"
#include "plm/nn/position_embedding.hpp"
#include "plm/nn/readout.hpp"
#include "plm/nn/t5.hpp"
#include "plm/objectives/attention_contrastive.hpp"
#include "plm/objectives/multitask.hpp"
#include "plm/objectives/negative_mining.hpp"
#include "plm/objectives/regression.hpp"
#include "plm/objectives/task_heads.hpp"
#include "plm/optim/adafactor.hpp"
#include "plm/optim/adamw.hpp"
#include "plm/optim/clip.hpp"
#include "plm/optim/optimizer.hpp"
#include "plm/samplers/decoding.hpp"
#include "plm/samplers/mlm.hpp"
#include "plm/samplers/negatives.hpp"
#include "plm/samplers/mlm_stream.hpp"
#include "plm/samplers/pretrain_stream.hpp"
#include "plm/train/seq2seq_step.hpp"
#include "plm/train/task_model.hpp"
#include "plm/train/variant_effects.hpp"

#if defined(EIGEN_CORE_H) || defined(EIGEN_WORLD_VERSION)
#error "a backend-generic plm header included Eigen (it must include plm/backend/ops.hpp, not plm/backend/cpu/ops.hpp)"
#endif

#include "ops_test_support.hpp"

using namespace plm;

TEST_CASE("generic headers without a backend, then plm/plm.hpp: a model instantiated afterwards runs") {
  nn::Ankh3Model<cpu, double> m(nn::T5Config::ankh3_tiny(), 3);
  Tensor<cpu, std::int32_t> ids(Shape{1, 5});
  for (index_t i = 0; i < 5; ++i) ids.data()[i] = 3 + static_cast<std::int32_t>(i);
  Tensor<cpu, double> h(Shape{1, 5, m.config().d_model});
  nn::Ankh3Model<cpu, double>::Cache c;
  m.encode(ids, {}, h, c);
  CHECK(ops<cpu>::all_finite(ConstView<cpu, double>(h)));
  CHECK(ops<cpu>::sum_squares(ConstView<cpu, double>(h)) > 0);
}
