#pragma once
#include <string_view>

namespace trestle::core {

// Byte-level UTF-8 validation (RFC 3629): rejects overlong forms, surrogates and code points past
// U+10FFFF, which is what the spec's "valid non-surrogate Unicode code points" means in UTF-8.
bool is_valid_utf8(std::string_view s);

}  // namespace trestle::core
