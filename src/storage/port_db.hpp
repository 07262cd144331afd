#pragma once
// Copies an SQLite deployment's database into PostgreSQL (Synapse's synapse_port_db): every table
// whole, in batches, each batch committed on PostgreSQL together with how far it got, so an
// interrupted port resumes where it stopped. A port may run while the server writes; a last run
// with the server stopped makes the copy exact (every run copies every table anew). Then compares
// the row counts of every table.
#include "storage/database.hpp"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace trestle::storage::port {

struct TableResult {
  std::string table;
  int64_t copied = 0;         // rows copied by this run
  int64_t source_rows = 0;    // count(*) on SQLite after the copy
  int64_t target_rows = 0;    // count(*) on PostgreSQL after the copy
  bool ok() const { return source_rows == target_rows; }
};

struct Options {
  std::string sqlite_path;           // an existing SQLite database, at this Trestle's schema version
  DatabaseOptions target;            // PostgreSQL; migrated to the same version first
  int64_t batch_rows = 2000;
  std::function<void(const std::string&)> progress;  // one line per table and batch; may be empty
};

// Throws std::runtime_error when the source is missing or at another schema version, or the target
// holds data that no earlier port wrote (a live PostgreSQL deployment is never written over).
std::vector<TableResult> sqlite_to_postgres(const Options& options);

}  // namespace trestle::storage::port
