#pragma once
// dist::NcclCommunicator's implementation (dist/nccl.hpp), compiled into
// plm_cuda.cu when the build has NCCL (PLM_NCCL).
#include <nccl.h>

#include <chrono>
#include <cstdlib>
#include <thread>
#include <vector>

#include "plm/backend/cuda/common.cuh"
#include "plm/dist/nccl.hpp"

#define PLM_NCCL_CHECK(call)                                                                         \
  do {                                                                                               \
    const ncclResult_t plm_nccl_ = (call);                                                           \
    if (plm_nccl_ != ncclSuccess) ::plm::detail::raise(__FILE__, __LINE__, #call " failed: ", ncclGetErrorString(plm_nccl_)); \
  } while (0)

namespace plm::dist {

struct NcclCommunicator::Impl {
  ncclComm_t comm = nullptr;
  bool aborted = false;
};

namespace detail_nccl {
inline ncclDataType_t type_of(DType t, const char* what) {
  PLM_CHECK(t == DType::f32 || t == DType::f64, "dist: ", what, ": NCCL collectives here add float or double, not ", dtype_name(t));
  return t == DType::f32 ? ncclFloat32 : ncclFloat64;
}
inline std::vector<index_t> offsets(const std::vector<index_t>& counts, int size, const char* what) {
  PLM_CHECK(static_cast<int>(counts.size()) == size, "dist: ", what, ": ", counts.size(), " segments for ", size, " ranks");
  std::vector<index_t> off(counts.size(), 0);
  for (std::size_t r = 1; r < counts.size(); ++r) off[r] = off[r - 1] + counts[r - 1];
  return off;
}
}  // namespace detail_nccl

NcclCommunicator::NcclCommunicator(Communicator& host) : host_(&host), impl_(new Impl) {
  ncclUniqueId id{};
  if (host.rank() == 0) PLM_NCCL_CHECK(ncclGetUniqueId(&id));
  host.host_broadcast(&id, sizeof id, 0, "the NCCL id broadcast");
  PLM_CUDA_CHECK(cudaSetDevice(plm::detail::cu::ctx().device));
  PLM_NCCL_CHECK(ncclCommInitRank(&impl_->comm, host.size(), id, host.rank()));
  set_timeout_seconds(host.timeout_seconds());
}

NcclCommunicator::~NcclCommunicator() {
  if (impl_->comm && !impl_->aborted) ncclCommDestroy(impl_->comm);
}

namespace detail_nccl {
// Waits for the collectives queued on the context's stream, polling so that a
// peer that never joins ends in an error instead of a hang.
inline void wait(NcclCommunicator::Impl& im, const Communicator& c, const char* what) {
  const cudaStream_t s = plm::detail::cu::stream();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(c.timeout_seconds());
  for (long polls = 0;; ++polls) {
    const cudaError_t e = cudaStreamQuery(s);
    if (e == cudaSuccess) return;
    if (e != cudaErrorNotReady) PLM_CUDA_CHECK(e);
    ncclResult_t async = ncclSuccess;
    PLM_NCCL_CHECK(ncclCommGetAsyncError(im.comm, &async));
    if (async != ncclSuccess) {
      ncclCommAbort(im.comm), im.aborted = true;
      PLM_FAIL("dist: rank ", c.rank(), ": NCCL failed in ", what, ": ", ncclGetErrorString(async));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ncclCommAbort(im.comm), im.aborted = true;
      PLM_FAIL("dist: rank ", c.rank(), " waited ", c.timeout_seconds(), " s in ", what,
               " (NCCL): a rank died, hangs, or is far slower (raise the timeout if a step or a checkpoint legitimately takes longer)");
    }
    if (polls > 1000) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}
}  // namespace detail_nccl

void NcclCommunicator::reduce_scatter(void* buf, const std::vector<index_t>& counts, DType t, const char* what) {
  const auto type = detail_nccl::type_of(t, what);
  const auto off = detail_nccl::offsets(counts, size(), what);
  auto* base = static_cast<char*>(buf);
  const std::size_t es = dtype_size(t);
  PLM_NCCL_CHECK(ncclGroupStart());
  for (int r = 0; r < size(); ++r) {
    char* p = base + static_cast<std::size_t>(off[static_cast<std::size_t>(r)]) * es;
    PLM_NCCL_CHECK(ncclReduce(p, p, static_cast<std::size_t>(counts[static_cast<std::size_t>(r)]), type, ncclSum, r, impl_->comm,
                              plm::detail::cu::stream()));
  }
  PLM_NCCL_CHECK(ncclGroupEnd());
  detail_nccl::wait(*impl_, *this, what);
}

void NcclCommunicator::all_gather(void* buf, const std::vector<index_t>& counts, DType t, const char* what) {
  const auto type = detail_nccl::type_of(t, what);
  const auto off = detail_nccl::offsets(counts, size(), what);
  auto* base = static_cast<char*>(buf);
  const std::size_t es = dtype_size(t);
  PLM_NCCL_CHECK(ncclGroupStart());
  for (int r = 0; r < size(); ++r) {
    char* p = base + static_cast<std::size_t>(off[static_cast<std::size_t>(r)]) * es;
    PLM_NCCL_CHECK(ncclBroadcast(p, p, static_cast<std::size_t>(counts[static_cast<std::size_t>(r)]), type, r, impl_->comm,
                                 plm::detail::cu::stream()));
  }
  PLM_NCCL_CHECK(ncclGroupEnd());
  detail_nccl::wait(*impl_, *this, what);
}

void NcclCommunicator::gather(const void* mine, void* all, const std::vector<index_t>& counts, DType t, int root, const char* what) {
  const auto type = detail_nccl::type_of(t, what);
  const auto off = detail_nccl::offsets(counts, size(), what);
  const std::size_t es = dtype_size(t);
  const cudaStream_t s = plm::detail::cu::stream();
  PLM_NCCL_CHECK(ncclGroupStart());
  if (rank() == root) {
    for (int r = 0; r < size(); ++r) {
      char* dst = static_cast<char*>(all) + static_cast<std::size_t>(off[static_cast<std::size_t>(r)]) * es;
      const auto n = static_cast<std::size_t>(counts[static_cast<std::size_t>(r)]);
      if (r == root) PLM_CUDA_CHECK(cudaMemcpyAsync(dst, mine, n * es, cudaMemcpyDeviceToDevice, s));
      else if (n) PLM_NCCL_CHECK(ncclRecv(dst, n, type, r, impl_->comm, s));
    }
  } else if (counts[static_cast<std::size_t>(rank())]) {
    PLM_NCCL_CHECK(ncclSend(mine, static_cast<std::size_t>(counts[static_cast<std::size_t>(rank())]), type, root, impl_->comm, s));
  }
  PLM_NCCL_CHECK(ncclGroupEnd());
  detail_nccl::wait(*impl_, *this, what);
}

void NcclCommunicator::scatter(const void* all, void* mine, const std::vector<index_t>& counts, DType t, int root, const char* what) {
  const auto type = detail_nccl::type_of(t, what);
  const auto off = detail_nccl::offsets(counts, size(), what);
  const std::size_t es = dtype_size(t);
  const cudaStream_t s = plm::detail::cu::stream();
  PLM_NCCL_CHECK(ncclGroupStart());
  if (rank() == root) {
    for (int r = 0; r < size(); ++r) {
      const char* src = static_cast<const char*>(all) + static_cast<std::size_t>(off[static_cast<std::size_t>(r)]) * es;
      const auto n = static_cast<std::size_t>(counts[static_cast<std::size_t>(r)]);
      if (r == root) PLM_CUDA_CHECK(cudaMemcpyAsync(mine, src, n * es, cudaMemcpyDeviceToDevice, s));
      else if (n) PLM_NCCL_CHECK(ncclSend(src, n, type, r, impl_->comm, s));
    }
  } else if (counts[static_cast<std::size_t>(rank())]) {
    PLM_NCCL_CHECK(ncclRecv(mine, static_cast<std::size_t>(counts[static_cast<std::size_t>(rank())]), type, root, impl_->comm, s));
  }
  PLM_NCCL_CHECK(ncclGroupEnd());
  detail_nccl::wait(*impl_, *this, what);
}

void NcclCommunicator::broadcast(void* buf, std::size_t bytes, int root, const char* what) {
  PLM_CHECK(root >= 0 && root < size(), "dist: ", what, ": root ", root, " outside ", size(), " ranks");
  PLM_NCCL_CHECK(ncclBroadcast(buf, buf, bytes, ncclUint8, root, impl_->comm, plm::detail::cu::stream()));
  detail_nccl::wait(*impl_, *this, what);
}

void NcclCommunicator::abort(int code) {
  if (impl_->comm && !impl_->aborted) ncclCommAbort(impl_->comm), impl_->aborted = true;
  host_->abort(code);
  std::_Exit(code);  // not reached: the host communicator ends the process
}

}  // namespace plm::dist
