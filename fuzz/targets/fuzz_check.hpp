#pragma once
// FUZZ_CHECK(cond, detail): a property a fuzz target asserts. Under libFuzzer a failure prints and
// aborts (libFuzzer saves the input); in the unit tests' replay (TRESTLE_FUZZ_REPLAY) it throws
// CheckFailure, which is not a std::exception, so no catch in a target can swallow it.
#include <cstdio>
#include <cstdlib>
#include <string>

namespace trestle::fuzz {

struct CheckFailure {
  std::string message;
};

[[noreturn]] inline void check_failed(const char* cond, const char* file, int line, const std::string& detail) {
  std::string message = std::string(file) + ":" + std::to_string(line) + ": FUZZ_CHECK(" + cond + ") failed: " + detail;
#ifdef TRESTLE_FUZZ_REPLAY
  throw CheckFailure{message};
#else
  std::fprintf(stderr, "%s\n", message.c_str());
  std::abort();
#endif
}

}  // namespace trestle::fuzz

#define FUZZ_CHECK(cond, detail)                                                     \
  do {                                                                               \
    if (!(cond)) ::trestle::fuzz::check_failed(#cond, __FILE__, __LINE__, (detail)); \
  } while (0)
