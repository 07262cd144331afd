#pragma once
// Stream tokens as clients see them ("s123", or "s123_4" in /sync, where the part after '_' is
// the typing serial): the stream position after which reading continues.
#include <cstdint>
#include <string>

namespace trestle::service {

int64_t parse_stream_token(const std::string& token);  // 400 M_INVALID_PARAM when malformed

}  // namespace trestle::service
