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
