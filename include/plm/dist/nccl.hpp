#pragma once
// dist::NcclCommunicator: tensor collectives on CUDA memory over NCCL, for
// data parallelism across GPUs; host collectives (metrics, the checkpoint's
// training state) go through the communicator it is built on (MPI), which
// also carries NCCL's bootstrap id (as llm.c and Megatron start NCCL).
//
// Built with the CUDA backend when NCCL is found (CMake PLM_NCCL, which
// defines PLM_NCCL and compiles the implementation into plm_cuda.cu:
// backend/cuda/nccl.cuh). It works on the current CudaContext's device and
// stream, so collectives queue behind the backward that made the gradients.
//
// Sums: NCCL picks its reduction order (rings, trees), so unlike the MPI
// communicator a sum over GPUs is not bitwise what one GPU accumulating the
// same micro-batches gets; it is the same on every rank. Uneven segments are
// grouped ncclReduce / ncclBroadcast calls (NCCL's reduce-scatter needs equal ones).
//
// Failures: a collective that has not finished after timeout_seconds()
// aborts the NCCL communicator and raises a plm::Error naming this rank.
#include <memory>

#include "plm/dist/communicator.hpp"

namespace plm::dist {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over every rank of `host`, which must outlive this object.
  explicit NcclCommunicator(Communicator& host);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  const char* name() const override { return "NCCL"; }
  bool device_memory() const override { return true; }

  void reduce_scatter(void* buf, const std::vector<index_t>& counts, DType t, const char* what) override;
  void all_gather(void* buf, const std::vector<index_t>& counts, DType t, const char* what) override;
  void gather(const void* mine, void* all, const std::vector<index_t>& counts, DType t, int root, const char* what) override;
  void scatter(const void* all, void* mine, const std::vector<index_t>& counts, DType t, int root, const char* what) override;
  void broadcast(void* buf, std::size_t bytes, int root, const char* what) override;

  void host_all_gather(const void* mine, std::size_t bytes, void* all, const char* what) override {
    host_->host_all_gather(mine, bytes, all, what);
  }
  void host_broadcast(void* buf, std::size_t bytes, int root, const char* what) override { host_->host_broadcast(buf, bytes, root, what); }
  void barrier(const char* what) override { host_->barrier(what); }
  [[noreturn]] void abort(int code) override;

  struct Impl;

 private:
  void root_exchange(bool to_root, void* mine, void* all, const std::vector<index_t>& counts, DType t, int root, const char* what);
  Communicator* host_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace plm::dist
