#pragma once
// TRESTLE_TEST_PG for the unit tests that need a PostgreSQL server: a libpq conninfo, or (what
// `scripts/postgres.sh run` sets) the private cluster's socket directory, where a test gets a
// database of its own (`dbname`), made new for each call. nullopt when it is not set.
#include "storage/database.hpp"
#include "storage/postgres/connection.hpp"

#include <cstdlib>
#include <optional>
#include <string>

namespace trestle::test_support {

inline std::optional<storage::DatabaseOptions> pg_test_options(const std::string& dbname) {
  const char* env = std::getenv("TRESTLE_TEST_PG");
  if (!env || !*env) return std::nullopt;
  std::string conninfo = env;
  if (conninfo.front() == '/') {
    storage::postgres::PgConnection admin("host='" + conninfo + "' user=postgres dbname=postgres");
    admin.exec("DROP DATABASE IF EXISTS " + dbname + " WITH (FORCE)");
    admin.exec("CREATE DATABASE " + dbname);
    conninfo = "host='" + conninfo + "' user=postgres dbname=" + dbname;
  }
  storage::DatabaseOptions o;
  o.engine = storage::Dialect::postgres;
  o.pg_conninfo = conninfo;
  o.readers_ahead = 1;
  return o;
}

}  // namespace trestle::test_support
