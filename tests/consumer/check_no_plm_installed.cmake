# Installs a consumer built with plm as a subproject and checks that the
# consumer's program is installed and none of plm's files are (no headers, no
# package config): plm's install rules are off when it is not the top-level project.
#
#   cmake -DBUILD_DIR=<consumer build> -DPREFIX=<empty prefix> -P check_no_plm_installed.cmake

cmake_minimum_required(VERSION 3.18)

if(NOT BUILD_DIR OR NOT PREFIX)
  message(FATAL_ERROR "check_no_plm_installed.cmake: pass -DBUILD_DIR=<consumer build> and -DPREFIX=<install prefix>")
endif()
file(REMOVE_RECURSE ${PREFIX})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "installing the consumer from ${BUILD_DIR} failed (exit ${rc})")
endif()
file(GLOB_RECURSE installed RELATIVE ${PREFIX} ${PREFIX}/*)
if(NOT installed MATCHES "(^|;)bin/consumer(\\.exe)?(;|$)")
  message(FATAL_ERROR "the consumer's own program was not installed; installed: ${installed}")
endif()
set(plm_files ${installed})
list(FILTER plm_files INCLUDE REGEX "plm")
if(plm_files)
  list(LENGTH plm_files n)
  list(SUBLIST plm_files 0 5 some)
  string(REPLACE ";" ", " some "${some}")
  message(FATAL_ERROR "installing a project that uses plm as a subproject installed ${n} of plm's files (${some}, ...); "
                      "plm's install rules must be off (PLM_INSTALL) when it is not the top-level project")
endif()
message(STATUS "installed ${installed}; none of plm's files")
