#pragma once
// plm: protein language models in C++. This header brings in the CPU side.
#include "plm/backend/cpu/ops.hpp"
#include "plm/backend/cpu/threads.hpp"
#include "plm/core/dtype.hpp"
#include "plm/core/error.hpp"
#include "plm/core/philox.hpp"
#include "plm/core/shape.hpp"
#include "plm/core/tensor.hpp"
