# Checks that the per-file ctest entries of plm_tests (plm_tests.<unit>, each
# running `plm_tests --source-file=*<file>`) together run every test case
# exactly once: no case is left out by every file pattern (a case defined in a
# header has the header as its file), and the cases the entries select add up
# to the cases of the whole binary (no file pattern matches two files).
#
#   cmake -DPLM_TESTS=<plm_tests> -DUNITS=test_a.cpp,test_b.cpp -P check_test_partition.cmake

cmake_minimum_required(VERSION 3.18)

function(count_cases out)
  execute_process(COMMAND ${PLM_TESTS} --count ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE text ERROR_VARIABLE text)
  if(NOT rc EQUAL 0 OR NOT text MATCHES "passing the current filters: ([0-9]+)")
    message(FATAL_ERROR "plm_tests --count ${ARGN} failed (exit ${rc}):\n${text}")
  endif()
  set(${out} ${CMAKE_MATCH_1} PARENT_SCOPE)
endfunction()

if(NOT PLM_TESTS OR NOT UNITS)
  message(FATAL_ERROR "check_test_partition.cmake: pass -DPLM_TESTS=<binary> and -DUNITS=<comma-separated test files>")
endif()
count_cases(total)
string(REPLACE "," ";" units "${UNITS}")
set(sum 0)
set(report "")
foreach(file IN LISTS units)
  count_cases(n --source-file=*${file})
  math(EXPR sum "${sum} + ${n}")
  string(APPEND report "  ${file}: ${n}\n")
endforeach()
# Cases no entry selects (defined in a header, or in a file not globbed).
string(REPLACE "," ",*" patterns "*${UNITS}")
count_cases(uncovered --source-file-exclude=${patterns})
if(NOT uncovered EQUAL 0)
  message(FATAL_ERROR "plm_tests has ${uncovered} test case(s) that no per-file ctest entry runs (defined outside "
                      "tests/test_*.cpp, e.g. in a header); list them with: plm_tests --list-test-cases --source-file-exclude=${patterns}")
endif()
# With every case covered, the counts add up exactly when none is selected twice.
if(NOT sum EQUAL total)
  message(FATAL_ERROR "plm_tests has ${total} test cases but the per-file entries select ${sum}; some case runs in "
                      "two entries (a test file name that ends another one's):\n${report}")
endif()
message(STATUS "plm_tests: ${total} test cases, each in exactly one per-file entry:\n${report}")
