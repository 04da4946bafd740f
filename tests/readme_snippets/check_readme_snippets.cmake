# Compiles every ```cpp block of README.md against plm, so the README's code
# cannot drift from the library. Each block must be a complete translation unit
# with a main(); a block whose first line is `// needs: cuda` is compiled (with
# plm::cuda) only when the CUDA backend is built, and skipped otherwise.
# Compiler errors point at README.md's own lines (#line directives).
#
#   cmake -DREADME=<README.md> -DPLM_SOURCE_DIR=<plm> -DWORK_DIR=<scratch> -DGENERATOR=<generator>
#         -DCXX_COMPILER=<c++> [-DPLM_BLAS=..] [-DPLM_OPENMP=..] [-DPLM_CUDA=ON -DCUDA_COMPILER=<nvcc>]
#         -P check_readme_snippets.cmake

cmake_minimum_required(VERSION 3.18)

foreach(var README PLM_SOURCE_DIR WORK_DIR GENERATOR CXX_COMPILER)
  if(NOT ${var})
    message(FATAL_ERROR "check_readme_snippets.cmake: -D${var}=... is required")
  endif()
endforeach()

file(READ ${README} text)
set(snippet_dir ${WORK_DIR}/snippets)
file(MAKE_DIRECTORY ${snippet_dir}/cpu ${snippet_dir}/cuda)
set(written "")

set(open_fence "```cpp\n")
set(close_fence "\n```")
string(LENGTH "${open_fence}" open_len)
set(rest "${text}")
set(consumed 0)  # characters of README.md before `rest`
set(count 0)
set(cuda_count 0)
while(TRUE)
  string(FIND "${rest}" "${open_fence}" start)
  if(start EQUAL -1)
    break()
  endif()
  math(EXPR body_start "${start} + ${open_len}")
  string(SUBSTRING "${rest}" ${body_start} -1 after)
  string(FIND "${after}" "${close_fence}" body_len)
  # The line of README.md where the code starts (1-based), for messages and #line.
  math(EXPR offset "${consumed} + ${body_start}")
  string(SUBSTRING "${text}" 0 ${offset} before)
  string(REGEX MATCHALL "\n" newlines "${before}")
  list(LENGTH newlines line)
  math(EXPR line "${line} + 1")
  if(body_len EQUAL -1)
    message(FATAL_ERROR "README.md:${line}: a ```cpp block is never closed")
  endif()
  string(SUBSTRING "${after}" 0 ${body_len} code)
  math(EXPR count "${count} + 1")

  if(NOT code MATCHES "(^|\n)[ \t]*int[ \t]+main[ \t]*\\(")
    message(FATAL_ERROR "README.md:${line}: C++ block ${count} is not a complete program: every ```cpp block of the "
                        "README must be a whole translation unit with its includes and an int main(), so that it compiles as shown")
  endif()
  set(kind cpu)
  if(code MATCHES "^//[ \t]*needs:[ \t]*cuda[ \t]*(\n|$)")
    set(kind cuda)
    math(EXPR cuda_count "${cuda_count} + 1")
  endif()
  # Rewritten only when changed, so a rerun recompiles only the blocks that changed.
  set(file ${snippet_dir}/${kind}/readme_line_${line}.cpp)
  set(content "#line ${line} \"${README}\"\n${code}\n")
  set(old_content "")
  if(EXISTS ${file})
    file(READ ${file} old_content)
  endif()
  if(NOT content STREQUAL old_content)
    file(WRITE ${file} "${content}")
  endif()
  list(APPEND written ${file})

  math(EXPR next "${body_start} + ${body_len} + 4")
  string(SUBSTRING "${rest}" ${next} -1 rest)
  math(EXPR consumed "${consumed} + ${next}")
endwhile()

# Blocks of an earlier README (other lines) are not programs any more.
file(GLOB previous ${snippet_dir}/cpu/*.cpp ${snippet_dir}/cuda/*.cpp)
foreach(file IN LISTS previous)
  if(NOT file IN_LIST written)
    file(REMOVE ${file})
  endif()
endforeach()
if(count EQUAL 0)
  message(FATAL_ERROR "${README} has no ```cpp block; nothing was checked")
endif()
set(with_cuda OFF)
if(PLM_CUDA AND cuda_count GREATER 0)
  set(with_cuda ON)
endif()
math(EXPR compiled "${count} - ${cuda_count}")
if(with_cuda)
  set(compiled ${count})
elseif(cuda_count GREATER 0)
  message(STATUS "README.md: ${cuda_count} block(s) marked `// needs: cuda` not compiled (plm built without the CUDA backend)")
endif()

# A small project: one program per block, on plm from this source tree.
set(configure_args -S ${CMAKE_CURRENT_LIST_DIR} -B ${WORK_DIR}/build -G "${GENERATOR}"
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DPLM_SOURCE_DIR=${PLM_SOURCE_DIR} -DPLM_SNIPPET_DIR=${snippet_dir}
    -DPLM_SNIPPETS_CUDA=${with_cuda} -DPLM_CUDA=${with_cuda})
foreach(var PLM_BLAS PLM_OPENMP)
  if(DEFINED ${var})
    list(APPEND configure_args -D${var}=${${var}})
  endif()
endforeach()
if(with_cuda)
  list(APPEND configure_args -DCMAKE_CUDA_COMPILER=${CUDA_COMPILER} -DCMAKE_CUDA_ARCHITECTURES=90)
endif()
execute_process(COMMAND ${CMAKE_COMMAND} ${configure_args} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring the README snippet project failed (exit ${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/build RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "a C++ block of README.md does not compile against plm (the errors above name its README.md line)")
endif()
message(STATUS "README.md: ${compiled} of ${count} C++ blocks compiled and linked against plm")
