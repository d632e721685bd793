# Every dependency comes from Debian 12 (CUDA from /usr/local/cuda when present).
# A missing one stops configure with the package to install: scripts/setup.sh installs them all.
include(FindPackageHandleStandardArgs)
find_package(PkgConfig QUIET)

function(sparta_require found what package)
  if(NOT ${found})
    message(FATAL_ERROR "sparta: ${what} not found. Install it with:\n"
                        "  apt-get install -y --no-install-recommends ${package}\n"
                        "(scripts/setup.sh installs every dependency)")
  endif()
endfunction()

if(NOT PkgConfig_FOUND)
  sparta_require(PkgConfig_FOUND "pkg-config" pkg-config)
endif()

# OpenBLAS through pkg-config: it carries the include dir of the pthread variant's cblas.h.
pkg_check_modules(OPENBLAS QUIET IMPORTED_TARGET openblas)
sparta_require(OPENBLAS_FOUND "OpenBLAS" libopenblas-dev)

pkg_check_modules(SPM QUIET IMPORTED_TARGET sentencepiece)
sparta_require(SPM_FOUND "SentencePiece" libsentencepiece-dev)

pkg_check_modules(XXHASH QUIET IMPORTED_TARGET libxxhash)
sparta_require(XXHASH_FOUND "xxHash" libxxhash-dev)

find_package(tomlplusplus QUIET)
sparta_require(tomlplusplus_FOUND "toml++" libtomlplusplus-dev)
find_package(CLI11 QUIET)
sparta_require(CLI11_FOUND "CLI11" libcli11-dev)
find_package(nlohmann_json QUIET)
sparta_require(nlohmann_json_FOUND "nlohmann-json" nlohmann-json3-dev)
find_package(fmt QUIET)
sparta_require(fmt_FOUND "fmt" libfmt-dev)
find_package(spdlog QUIET)
sparta_require(spdlog_FOUND "spdlog" libspdlog-dev)
find_package(OpenMP QUIET COMPONENTS CXX)
sparta_require(OpenMP_CXX_FOUND "OpenMP (libgomp)" libgomp1)
find_package(Threads REQUIRED)

if(BUILD_TESTING)
  find_package(GTest QUIET)
  sparta_require(GTest_FOUND "GoogleTest" libgtest-dev)
endif()

if(SPARTA_MPI)
  find_package(MPI QUIET COMPONENTS CXX)
  sparta_require(MPI_CXX_FOUND "Open MPI" "libopenmpi-dev openmpi-bin")
endif()
if(SPARTA_PROMETHEUS)
  # No version here: Debian's package ships no version file (find_package(... 1.0) fails).
  find_package(prometheus-cpp CONFIG QUIET)
  sparta_require(prometheus-cpp_FOUND "prometheus-cpp" prometheus-cpp-dev)
endif()
if(SPARTA_GRPC)
  find_package(Protobuf QUIET)
  sparta_require(Protobuf_FOUND "protobuf" "libprotobuf-dev protobuf-compiler")
  find_package(gRPC CONFIG QUIET)
  sparta_require(gRPC_FOUND "gRPC" "libgrpc++-dev protobuf-compiler-grpc")
  # sparta_grpc_library(TARGET DIR NAME): a static library of DIR/NAME.proto's generated C++
  # (messages and gRPC stubs), its headers on the include path as SYSTEM (generated code is not
  # ours: no project warnings on it).
  function(sparta_grpc_library target dir name)
    set(gen ${CMAKE_CURRENT_BINARY_DIR}/gen)
    file(MAKE_DIRECTORY ${gen})
    add_custom_command(
      OUTPUT ${gen}/${name}.pb.cc ${gen}/${name}.pb.h ${gen}/${name}.grpc.pb.cc
             ${gen}/${name}.grpc.pb.h
      COMMAND protobuf::protoc --proto_path=${dir} --cpp_out=${gen} --grpc_out=${gen}
              --plugin=protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin> ${dir}/${name}.proto
      DEPENDS ${dir}/${name}.proto
      COMMENT "protoc: ${name}.proto")
    add_library(${target} STATIC ${gen}/${name}.pb.cc ${gen}/${name}.grpc.pb.cc)
    target_include_directories(${target} SYSTEM PUBLIC ${gen})
    target_link_libraries(${target} PUBLIC gRPC::grpc++ protobuf::libprotobuf)
  endfunction()
endif()

# CUDA: AUTO turns it on when nvcc exists. Never "native" architectures: the build machine has no
# GPU. 80 = A100, 90 = H100/H200.
set(SPARTA_HAVE_CUDA OFF)
if(NOT SPARTA_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 80 90)
    endif()
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 17)  # CMake 3.25 has no CUDA20 flags for nvcc; kernels need only 17
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    find_package(CUDAToolkit REQUIRED)
    find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} $ENV{NCCL_HOME}/include)
    find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} $ENV{NCCL_HOME}/lib)
    set(SPARTA_HAVE_CUDA ON)
  elseif(SPARTA_CUDA STREQUAL "ON")
    message(FATAL_ERROR "sparta: SPARTA_CUDA=ON but no CUDA compiler (nvcc) was found. "
                        "Install the CUDA toolkit under /usr/local/cuda or set SPARTA_CUDA=OFF.")
  endif()
endif()
