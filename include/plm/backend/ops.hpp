#pragma once
// What a backend-generic header needs to call ops<B>: the backend tags with
// the ops<B> primary template, tensors and views, host memory, and the mask
// argument of the softmax. No backend is defined here: the program includes
// plm/plm.hpp (ops<cpu>, Eigen) and/or plm/cuda.hpp (ops<cuda>) before it
// instantiates a layer, so a file that only trains on the GPU never parses Eigen.
#include "plm/backend/cpu/memory.hpp"
#include "plm/backend/cross_entropy_sums.hpp"
#include "plm/backend/softmax_mask.hpp"
#include "plm/backend/tags.hpp"
#include "plm/core/tensor.hpp"
