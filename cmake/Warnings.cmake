# Project code builds warning-free; third-party headers come in as SYSTEM includes.
add_library(sparta_options INTERFACE)
target_compile_options(sparta_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Werror>
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra --Werror=all-warnings --expt-relaxed-constexpr>)
if(SPARTA_NATIVE)
  target_compile_options(sparta_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
endif()
target_include_directories(sparta_options INTERFACE ${PROJECT_SOURCE_DIR})
if(SPARTA_SANITIZE)
  target_compile_options(sparta_options INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all>)
  target_link_options(sparta_options INTERFACE -fsanitize=address,undefined)
endif()
