# Project code builds warning-free; third-party headers come in as SYSTEM includes.
# SPARTA_WERROR=OFF keeps the warnings but lets a newer compiler than CI's (the GPU machine's
# g++ 13) finish a build: its new warnings are reported, then fixed here.
add_library(sparta_options INTERFACE)
target_compile_options(sparta_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic>
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra --expt-relaxed-constexpr>)
if(SPARTA_WERROR)
  target_compile_options(sparta_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Werror>
                                                  $<$<COMPILE_LANGUAGE:CUDA>:--Werror=all-warnings>)
endif()
if(SPARTA_NATIVE)
  target_compile_options(sparta_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
endif()
target_include_directories(sparta_options INTERFACE ${PROJECT_SOURCE_DIR})
if(SPARTA_SANITIZE)
  target_compile_options(sparta_options INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all>)
  target_link_options(sparta_options INTERFACE -fsanitize=address,undefined)
endif()
