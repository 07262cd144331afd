#pragma once
#include "storage/migrations.hpp"

#include <string>

namespace trestle::storage {
// The schema that migrations 1-29 build on SQLite (schema_snapshot()), written for PostgreSQL 15:
// the same tables, columns, keys, indexes and rows, so the stores' portable SQL finds on either
// engine what it finds on the other. A new PostgreSQL database runs this script, then every
// migration step after `version` (steps written from then on are portable or dialect-switched).
const SchemaSnapshot& postgres_schema_snapshot();
// Migration 31 on PostgreSQL: search_fold() returns text without a letter it folds at once.
const std::string& postgres_search_fold_fast_path();
}  // namespace trestle::storage
