#pragma once
// dist::Environment: the process's place in a job, made once in main().
//
//   int main(int argc, char** argv) {
//     plm::dist::Environment env(argc, argv);
//     return plm::dist::run_job(env.world(), "my_trainer", [&] { ... });
//   }
//
// Started by an MPI launcher (mpirun, mpiexec, srun with PMI or PMIx: it sets
// OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK), in a program built with
// PLM_MPI, it initialises MPI and world() is an MpiCommunicator over every
// rank. Started any other way, world() is a SingleProcess and MPI is never
// touched, so a plain run needs no launcher. A program built without MPI that
// a launcher starts as one of several ranks refuses to run: each rank would
// otherwise train alone and write the same files.
#include <algorithm>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <string>

#include "plm/dist/communicator.hpp"
#if defined(PLM_MPI)
#include "plm/dist/mpi.hpp"
#endif

namespace plm::dist {

// The world size an MPI launcher announced in the environment (0 when none did).
inline int launcher_world_size() {
  for (const char* key : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE", "MPI_LOCALNRANKS"}) {
    if (const char* v = std::getenv(key); v && *v) {
      char* end = nullptr;
      const long n = std::strtol(v, &end, 10);
      if (end && *end == '\0' && n > 0 && n < (1L << 24)) return static_cast<int>(n);
    }
  }
  return std::getenv("PMIX_RANK") ? 1 : 0;  // PMIx without a size variable: started by a launcher; MPI says how many
}

// This process's index among the job's ranks on its machine, and how many
// ranks share the machine, as the launcher says (0 and 1 without one): a GPU
// per local rank, and the cores shared between the local ranks.
inline int launcher_int(std::initializer_list<const char*> keys, int fallback) {
  for (const char* key : keys) {
    if (const char* v = std::getenv(key); v && *v) {
      char* end = nullptr;
      const long n = std::strtol(v, &end, 10);
      if (end && *end == '\0' && n >= 0 && n < (1L << 24)) return static_cast<int>(n);
    }
  }
  return fallback;
}
inline int local_rank() { return launcher_int({"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "MV2_COMM_WORLD_LOCAL_RANK"}, 0); }
inline int local_size() {
  return std::max(1, launcher_int({"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE", "MV2_COMM_WORLD_LOCAL_SIZE"}, 1));
}

// Whether MPI support was compiled in (PLM_MPI).
inline constexpr bool built_with_mpi() {
#if defined(PLM_MPI)
  return true;
#else
  return false;
#endif
}

class Environment {
 public:
  Environment(int& argc, char**& argv) {
    const int launched = launcher_world_size();
#if defined(PLM_MPI)
    if (launched > 0) {
      int provided = 0;
      // FUNNELED: only the main thread calls MPI (OpenMP threads compute between the calls).
      if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        PLM_FAIL("dist: MPI_Init_thread failed (started by an MPI launcher of ", launched, " ranks)");
      initialised_ = true;
      world_ = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD);
    }
#else
    (void)argc, (void)argv;
    PLM_CHECK(launched <= 1, "dist: started as one of ", launched,
              " ranks by an MPI launcher, but this program was built without MPI (configure with -DPLM_MPI=ON and an MPI "
              "library such as Debian's libopenmpi-dev): every rank would train alone and write the same files");
#endif
    if (!world_) world_ = std::make_unique<SingleProcess>();
    if (const char* t = std::getenv("PLM_DIST_TIMEOUT"); t && *t) {
      char* end = nullptr;
      const double s = std::strtod(t, &end);
      PLM_CHECK(end && *end == '\0' && s > 0, "dist: PLM_DIST_TIMEOUT='", t, "' is not a positive number of seconds");
      world_->set_timeout_seconds(s);
    }
  }
  ~Environment() {
    world_.reset();
#if defined(PLM_MPI)
    if (initialised_) MPI_Finalize();
#endif
  }
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

  Communicator& world() { return *world_; }
  int rank() const { return world_->rank(); }
  int size() const { return world_->size(); }
  // Rank 0 writes the files, the metrics and the progress of a job.
  bool lead() const { return world_->rank() == 0; }

 private:
  std::unique_ptr<Communicator> world_;
  bool initialised_ = false;
};

}  // namespace plm::dist
