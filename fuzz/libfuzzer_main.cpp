// libFuzzer's entry point for one target: the build defines TRESTLE_FUZZ_ENTRY as the target's
// function (trestle_fuzz_<name>), which the unit tests also call to replay kept inputs.
#include <cstddef>
#include <cstdint>

int TRESTLE_FUZZ_ENTRY(const uint8_t* data, size_t size);

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return TRESTLE_FUZZ_ENTRY(data, size); }
