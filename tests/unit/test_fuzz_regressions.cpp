// Replays what the fuzzers keep: every input in fuzz/corpus/<target>/ (the seeds) and
// fuzz/regressions/<target>/ (each crash a fuzzer ever found, kept after the fix) through the same
// target functions scripts/fuzz.sh fuzzes, so CI runs them with g++ (and under the sanitizers).
#include "fuzz_check.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

int trestle_fuzz_request(const uint8_t* data, size_t size);
int trestle_fuzz_canonical_json(const uint8_t* data, size_t size);
int trestle_fuzz_identifiers(const uint8_t* data, size_t size);

namespace {

namespace fs = std::filesystem;
using Target = int (*)(const uint8_t*, size_t);

// Returns how many files ran.
size_t replay(const std::string& target, Target fn) {
  size_t count = 0;
  for (const char* kind : {"corpus", "regressions"}) {
    fs::path dir = fs::path(TRESTLE_FUZZ_DIR) / kind / target;
    if (!fs::is_directory(dir)) continue;
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (!entry.is_regular_file() || entry.path().filename().string().front() == '.') continue;
      std::ifstream in(entry.path(), std::ios::binary);
      std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      ++count;
      try {
        fn(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
      } catch (const trestle::fuzz::CheckFailure& f) {
        ADD_FAILURE() << entry.path() << ": " << f.message;
      } catch (const std::exception& e) {
        ADD_FAILURE() << entry.path() << ": the target threw " << e.what();
      }
    }
  }
  return count;
}

}  // namespace

TEST(FuzzRegressions, Request) { EXPECT_GT(replay("request", trestle_fuzz_request), 0u); }
TEST(FuzzRegressions, CanonicalJson) { EXPECT_GT(replay("canonical_json", trestle_fuzz_canonical_json), 0u); }
TEST(FuzzRegressions, Identifiers) { EXPECT_GT(replay("identifiers", trestle_fuzz_identifiers), 0u); }
