#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace trestle::storage {
// Numbered schema migrations: entry i brings the schema from version i to i+1. Never edit a
// released entry; append a new one.
const std::vector<std::string>& migrations();

// The schema after the first `version` migrations as one script (schema_snapshot.cpp): a new
// database runs it, then the steps after `version`, instead of every step from the first.
struct SchemaSnapshot {
  size_t version;
  const char* sql;
};
const SchemaSnapshot& schema_snapshot();

// PostgreSQL's own text of step i (0-based), for a step past postgres_schema_snapshot() whose
// SQLite text PostgreSQL does not accept; nullptr: the same text runs on both.
const char* postgres_step(size_t i);
}  // namespace trestle::storage
