#include "service/stream_token.hpp"

#include "core/error.hpp"

#include <algorithm>
#include <cctype>

namespace trestle::service {

int64_t parse_stream_token(const std::string& token) {
  if (token.size() < 2 || token[0] != 's') throw MatrixError::invalid_param("Invalid pagination token");
  size_t end = token.find('_');
  std::string digits = token.substr(1, end == std::string::npos ? std::string::npos : end - 1);
  if (digits.empty() || digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) {
    throw MatrixError::invalid_param("Invalid pagination token");
  }
  return std::stoll(digits);
}

}  // namespace trestle::service
