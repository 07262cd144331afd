# libFuzzer targets (clang only), built by scripts/fuzz.sh in build-fuzz/ with -DTRESTLE_FUZZ=ON.
# Each fuzz/targets/<name>.cpp defines trestle_fuzz_<name>(data, size); libfuzzer_main.cpp turns it
# into LLVMFuzzerTestOneInput. The unit tests compile the same files to replay the kept inputs.
set(TRESTLE_FUZZ_TARGETS request canonical_json identifiers)
set(TRESTLE_FUZZ_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)

add_library(trestle_fuzz_lib STATIC
  src/core/canonical_json.cpp src/core/identifiers.cpp src/core/utf8.cpp
  src/http/router.cpp src/http/request.cpp fuzz/boost_src.cpp)
target_include_directories(trestle_fuzz_lib PUBLIC src fuzz/targets)
target_compile_options(trestle_fuzz_lib PUBLIC -fsanitize=fuzzer-no-link ${TRESTLE_FUZZ_FLAGS})
target_link_libraries(trestle_fuzz_lib PUBLIC Boost::headers spdlog::spdlog)

foreach(name IN LISTS TRESTLE_FUZZ_TARGETS)
  add_executable(fuzz_${name} fuzz/targets/${name}.cpp fuzz/libfuzzer_main.cpp)
  target_compile_definitions(fuzz_${name} PRIVATE TRESTLE_FUZZ_ENTRY=trestle_fuzz_${name})
  target_link_libraries(fuzz_${name} PRIVATE trestle_fuzz_lib)
  target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer ${TRESTLE_FUZZ_FLAGS})
  set_target_properties(fuzz_${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
endforeach()
