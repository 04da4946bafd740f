#pragma once
// The common aliases, instantiated once.
//
// A T5 model, its layers, the multi-task objective and the optimizers are
// templates: every translation unit that trains one generates their code
// again, Eigen GEMMs included, which is most of a training program's compile
// time. With PLM_PRECOMPILED defined, the declarations below tell the
// compiler that the float CPU instantiations of the Ankh / Ankh3 models and
// their pieces live in one compiled unit, plm/precompiled.cpp, and it stops
// generating them in every file.
//
// plm's CMake builds that unit as the static library plm::precompiled
// (option PLM_PRECOMPILED), which defines the macro for the programs that
// link it. A project that does not use plm's CMake can do the same: compile
// plm/precompiled.cpp once, and define PLM_PRECOMPILED in the files that use
// the aliases. Other types and backends are instantiated in place, as usual.
#include "plm/nn/t5.hpp"
#include "plm/objectives/cross_entropy.hpp"
#include "plm/objectives/multitask.hpp"
#include "plm/optim/adafactor.hpp"
#include "plm/optim/adamw.hpp"

// PLM_INSTANTIATE(extern) declares, PLM_INSTANTIATE() defines (precompiled.cpp).
#define PLM_INSTANTIATE(kw)                                               \
  namespace plm::nn {                                                     \
  kw template class Linear<cpu, float>;                                   \
  kw template class Embedding<cpu, float>;                                \
  kw template class RMSNorm<cpu, float>;                                  \
  kw template class Attention<cpu, float>;                                \
  kw template class RelativePositionBias<cpu, float>;                     \
  kw template class FeedForward<cpu, float, GeluTanh, Gated>;             \
  kw template class FeedForward<cpu, float, Silu, Gated>;                 \
  kw template class EncoderLayer<cpu, float, AnkhPolicies>;               \
  kw template class EncoderLayer<cpu, float, Ankh3Policies>;              \
  kw template class DecoderLayer<cpu, float, AnkhPolicies>;               \
  kw template class DecoderLayer<cpu, float, Ankh3Policies>;              \
  kw template class EncoderStack<cpu, float, AnkhPolicies>;               \
  kw template class EncoderStack<cpu, float, Ankh3Policies>;              \
  kw template class DecoderStack<cpu, float, AnkhPolicies>;               \
  kw template class DecoderStack<cpu, float, Ankh3Policies>;              \
  kw template class T5Model<cpu, float, AnkhPolicies>;                    \
  kw template class T5Model<cpu, float, Ankh3Policies>;                   \
  }                                                                       \
  namespace plm::objectives {                                             \
  kw template class CrossEntropy<cpu, float>;                             \
  kw template class MultiTask<cpu, float>;                                \
  }                                                                       \
  namespace plm::optim {                                                  \
  kw template class AdamW<cpu, float>;                                    \
  kw template class Adafactor<cpu, float>;                                \
  }

#if defined(PLM_PRECOMPILED) && !defined(PLM_PRECOMPILED_UNIT)
PLM_INSTANTIATE(extern)
#endif
