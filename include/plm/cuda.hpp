#pragma once
// plm's CUDA backend: include after (or instead of) plm/plm.hpp and link the
// plm::cuda CMake target, which compiles backend/cuda/plm_cuda.cu with nvcc
// into the program. Everything here is plain C++; layers, objectives and
// optimizers written against ops<B> run with B = plm::cuda unchanged.
#include "plm/backend/cuda/context.hpp"
#include "plm/backend/cuda/memory.hpp"
#include "plm/backend/cuda/ops.hpp"
#include "plm/plm.hpp"
