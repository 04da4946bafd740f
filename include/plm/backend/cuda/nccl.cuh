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

namespace detail_nccl {
// f(segment r's address, its element count, r) for every rank, inside one NCCL group, then the wait.
template <class F>
void each_segment(NcclCommunicator::Impl& im, const Communicator& c, void* buf, const std::vector<index_t>& counts, DType t,
                  const char* what, F&& f) {
  (void)type_of(t, what);
  const auto off = offsets(counts, c.size(), what);
  PLM_NCCL_CHECK(ncclGroupStart());
  for (int r = 0; r < c.size(); ++r)
    f(static_cast<char*>(buf) + static_cast<std::size_t>(off[static_cast<std::size_t>(r)]) * dtype_size(t),
      static_cast<std::size_t>(counts[static_cast<std::size_t>(r)]), r);
  PLM_NCCL_CHECK(ncclGroupEnd());
  wait(im, c, what);
}
}  // namespace detail_nccl

void NcclCommunicator::reduce_scatter(void* buf, const std::vector<index_t>& counts, DType t, const char* what) {
  detail_nccl::each_segment(*impl_, *this, buf, counts, t, what, [&](char* p, std::size_t n, int r) {
    PLM_NCCL_CHECK(ncclReduce(p, p, n, detail_nccl::type_of(t, what), ncclSum, r, impl_->comm, plm::detail::cu::stream()));
  });
}

void NcclCommunicator::all_gather(void* buf, const std::vector<index_t>& counts, DType t, const char* what) {
  detail_nccl::each_segment(*impl_, *this, buf, counts, t, what, [&](char* p, std::size_t n, int r) {
    PLM_NCCL_CHECK(ncclBroadcast(p, p, n, detail_nccl::type_of(t, what), r, impl_->comm, plm::detail::cu::stream()));
  });
}

// Root's `all` segments with the ranks' `mine`: to_root receives them (gather), otherwise sends them (scatter).
void NcclCommunicator::root_exchange(bool to_root, void* mine, void* all, const std::vector<index_t>& counts, DType t, int root,
                                     const char* what) {
  PLM_CHECK(root >= 0 && root < size(), "dist: ", what, ": root ", root, " outside ", size(), " ranks");
  const auto type = detail_nccl::type_of(t, what);
  const cudaStream_t s = plm::detail::cu::stream();
  if (rank() != root) {
    const auto n = static_cast<std::size_t>(counts.at(static_cast<std::size_t>(rank())));
    PLM_NCCL_CHECK(ncclGroupStart());
    if (n) PLM_NCCL_CHECK(to_root ? ncclSend(mine, n, type, root, impl_->comm, s) : ncclRecv(mine, n, type, root, impl_->comm, s));
    PLM_NCCL_CHECK(ncclGroupEnd());
    return detail_nccl::wait(*impl_, *this, what);
  }
  detail_nccl::each_segment(*impl_, *this, all, counts, t, what, [&](char* p, std::size_t n, int r) {
    if (r == root) PLM_CUDA_CHECK(cudaMemcpyAsync(to_root ? p : mine, to_root ? mine : p, n * dtype_size(t), cudaMemcpyDeviceToDevice, s));
    else if (n) PLM_NCCL_CHECK(to_root ? ncclRecv(p, n, type, r, impl_->comm, s) : ncclSend(p, n, type, r, impl_->comm, s));
  });
}

void NcclCommunicator::gather(const void* mine, void* all, const std::vector<index_t>& counts, DType t, int root, const char* what) {
  root_exchange(true, const_cast<void*>(mine), all, counts, t, root, what);
}

void NcclCommunicator::scatter(const void* all, void* mine, const std::vector<index_t>& counts, DType t, int root, const char* what) {
  root_exchange(false, mine, const_cast<void*>(all), counts, t, root, what);
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
