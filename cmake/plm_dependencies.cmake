# Finds what plm::plm links. Used by plm's own build and by the installed
# plmConfig.cmake, with the same options, so both resolve dependencies alike.
include(CMakeFindDependencyMacro)

find_package(Eigen3 3.3 REQUIRED NO_MODULE)
# JSON for the io layer: safetensors headers and config.json files.
find_package(nlohmann_json 3 REQUIRED)
# zlib for the data layer: gzip-compressed FASTA is read as a stream.
find_package(ZLIB REQUIRED)

if(PLM_OPENMP)
  find_package(OpenMP REQUIRED COMPONENTS CXX)
endif()

set(PLM_USE_BLAS OFF)
if(PLM_BLAS STREQUAL "ON" OR PLM_BLAS STREQUAL "AUTO")
  set(BLA_VENDOR OpenBLAS)
  if(PLM_BLAS STREQUAL "ON")
    find_package(BLAS REQUIRED)
  else()
    find_package(BLAS QUIET)
  endif()
  if(BLAS_FOUND)
    set(PLM_USE_BLAS ON)
  endif()
endif()
# SentencePiece for tokenizer directories that hold only spiece.model
# (data/tokenizer.hpp); tokenizer.json needs nothing. Debian: libsentencepiece-dev.
set(PLM_USE_SENTENCEPIECE OFF)
if(PLM_SENTENCEPIECE STREQUAL "ON" OR PLM_SENTENCEPIECE STREQUAL "AUTO")
  find_path(PLM_SENTENCEPIECE_INCLUDE_DIR sentencepiece_processor.h)
  find_library(PLM_SENTENCEPIECE_LIBRARY sentencepiece)
  if(PLM_SENTENCEPIECE_INCLUDE_DIR AND PLM_SENTENCEPIECE_LIBRARY)
    if(NOT TARGET plm::sentencepiece)
      add_library(plm::sentencepiece UNKNOWN IMPORTED)
      set_target_properties(plm::sentencepiece PROPERTIES
        IMPORTED_LOCATION "${PLM_SENTENCEPIECE_LIBRARY}"
        INTERFACE_INCLUDE_DIRECTORIES "${PLM_SENTENCEPIECE_INCLUDE_DIR}")
    endif()
    set(PLM_USE_SENTENCEPIECE ON)
  elseif(PLM_SENTENCEPIECE STREQUAL "ON")
    message(FATAL_ERROR "plm: PLM_SENTENCEPIECE=ON but sentencepiece_processor.h / libsentencepiece were not found (Debian: apt-get install libsentencepiece-dev)")
  endif()
endif()

# MPI for data-parallel training across processes and machines (dist/mpi.hpp).
# Debian: libopenmpi-dev (and openmpi-bin for mpirun).
set(PLM_USE_MPI OFF)
if(PLM_MPI STREQUAL "ON" OR PLM_MPI STREQUAL "AUTO")
  if(PLM_MPI STREQUAL "ON")
    find_package(MPI COMPONENTS CXX)
    if(NOT MPI_CXX_FOUND)
      message(FATAL_ERROR "plm: PLM_MPI=ON but no MPI library was found (Debian: apt-get install libopenmpi-dev openmpi-bin)")
    endif()
  else()
    find_package(MPI QUIET COMPONENTS CXX)
  endif()
  if(MPI_CXX_FOUND)
    set(PLM_USE_MPI ON)
  endif()
endif()

if(NOT PLM_DEPENDENCIES_QUIET)
  message(STATUS "plm: OpenBLAS route for GEMM: ${PLM_USE_BLAS}; OpenMP: ${PLM_OPENMP}; SentencePiece: ${PLM_USE_SENTENCEPIECE}; MPI: ${PLM_USE_MPI}")
endif()
