#pragma once
#include <string>
#include <vector>

namespace trestle::storage {
// Numbered schema migrations: entry i brings the schema from version i to i+1. Never edit a
// released entry; append a new one.
const std::vector<std::string>& migrations();
}  // namespace trestle::storage
