// Fuzz target: canonical JSON (src/core/canonical_json.*). Any bytes the request parser accepts as
// JSON: canonicalising never crashes, refuses exactly what is_canonical_compatible refuses, and
// parse -> canonicalise -> parse -> canonicalise is stable (the second text equals the first).
#include "core/canonical_json.hpp"
#include "core/json_depth.hpp"
#include "fuzz_check.hpp"

#include <boost/json/parse.hpp>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string_view>

int trestle_fuzz_canonical_json(const uint8_t* data, size_t size) {
  using namespace trestle;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(text, ec, {}, core::json_parse_options());
  if (ec) return 0;

  const bool compatible = core::is_canonical_compatible(v);
  std::string first;
  try {
    first = core::canonical_json(v);
  } catch (const std::invalid_argument& e) {
    FUZZ_CHECK(!compatible, std::string("is_canonical_compatible but canonical_json threw: ") + e.what());
    return 0;
  }
  FUZZ_CHECK(compatible, "canonical_json accepted a value is_canonical_compatible refuses: " + first);

  boost::json::value again = boost::json::parse(first, ec, {}, core::json_parse_options());
  FUZZ_CHECK(!ec, "canonical JSON does not parse back (" + ec.message() + "): " + first);
  FUZZ_CHECK(core::is_canonical_compatible(again), "canonical JSON parses to an incompatible value: " + first);
  const std::string second = core::canonical_json(again);
  FUZZ_CHECK(second == first, "not stable: " + first + " became " + second);
  return 0;
}
