# plm::cuda: the CUDA backend target. Requires the CUDA toolkit; CPU-only builds never read this file.
#
# The target carries one source, backend/cuda/plm_cuda.cu, as an INTERFACE
# source: every program that links plm::cuda compiles it once with nvcc. The
# consuming project must enable the CUDA language (project(... LANGUAGES CXX CUDA)).
include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  message(FATAL_ERROR "plm: PLM_CUDA=ON but no CUDA compiler was found; install the CUDA toolkit or set PLM_CUDA=OFF")
endif()
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  # Ampere and Hopper; pass -DCMAKE_CUDA_ARCHITECTURES=native (or a list) to choose.
  set(CMAKE_CUDA_ARCHITECTURES 80 90)
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
add_library(plm_cuda INTERFACE)
add_library(plm::cuda ALIAS plm_cuda)
target_sources(plm_cuda INTERFACE
  $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include/plm/backend/cuda/plm_cuda.cu>
  $<INSTALL_INTERFACE:$<INSTALL_PREFIX>/${CMAKE_INSTALL_INCLUDEDIR}/plm/backend/cuda/plm_cuda.cu>)
target_link_libraries(plm_cuda INTERFACE plm::plm CUDA::cudart CUDA::cublas)
target_compile_definitions(plm_cuda INTERFACE PLM_HAS_CUDA)
target_compile_features(plm_cuda INTERFACE cuda_std_17)
# Installed as plm::cuda in its own export set (see the top-level install rules).
set_target_properties(plm_cuda PROPERTIES EXPORT_NAME cuda)

# NCCL for data parallelism across GPUs (dist/nccl.hpp; the communicator is
# compiled into plm_cuda.cu). It ships with the CUDA toolkit or as libnccl-dev.
set(PLM_USE_NCCL OFF)
if(PLM_NCCL STREQUAL "ON" OR PLM_NCCL STREQUAL "AUTO")
  find_path(PLM_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
  find_library(PLM_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR})
  if(PLM_NCCL_INCLUDE_DIR AND PLM_NCCL_LIBRARY)
    set(PLM_USE_NCCL ON)
    target_compile_definitions(plm_cuda INTERFACE PLM_NCCL)
    target_include_directories(plm_cuda INTERFACE ${PLM_NCCL_INCLUDE_DIR})
    target_link_libraries(plm_cuda INTERFACE ${PLM_NCCL_LIBRARY})
  elseif(PLM_NCCL STREQUAL "ON")
    message(FATAL_ERROR "plm: PLM_NCCL=ON but nccl.h / libnccl were not found (CUDA toolkit, or apt-get install libnccl-dev)")
  endif()
endif()
message(STATUS "plm: NCCL for the CUDA backend: ${PLM_USE_NCCL}")
