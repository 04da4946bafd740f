#pragma once
// ops<cpu>: the primitives every layer uses, on host memory.
//
// Each group lives in its own header (gemm.hpp, softmax.hpp, ...); ops<cpu>
// gathers them so layers call ops<B>::name(...) whatever the backend. Every op
// is a template over the element type and works for float and double (double
// is what gradient checks use). Shapes are checked at entry; a mismatch raises
// plm::Error naming the op and the shapes.
#include "plm/backend/cpu/activation.hpp"
#include "plm/backend/cpu/blockwise_attention.hpp"
#include "plm/backend/cpu/cross_entropy.hpp"
#include "plm/backend/cpu/dropout.hpp"
#include "plm/backend/cpu/elementwise.hpp"
#include "plm/backend/cpu/embedding.hpp"
#include "plm/backend/cpu/gemm.hpp"
#include "plm/backend/cpu/norm.hpp"
#include "plm/backend/cpu/optimizer.hpp"
#include "plm/backend/cpu/reduce.hpp"
#include "plm/backend/cpu/softmax.hpp"
#include "plm/backend/matmul.hpp"
#include "plm/backend/tags.hpp"

namespace plm {

template <>
struct ops<cpu> : detail::cpu_gemm,
                  detail::matmul_op<cpu>,
                  detail::cpu_elementwise,
                  detail::cpu_softmax,
                  detail::cpu_blockwise_attention,
                  detail::cpu_norm,
                  detail::cpu_activation,
                  detail::cpu_embedding,
                  detail::cpu_reduce,
                  detail::cpu_dropout,
                  detail::cpu_cross_entropy,
                  detail::cpu_optimizer {};

}  // namespace plm
