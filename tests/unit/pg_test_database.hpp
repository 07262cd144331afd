#pragma once
// The PostgreSQL the unit tests may use. TRESTLE_TEST_PG: a libpq conninfo, or (scripts/postgres.sh
// run) the private cluster's socket directory, where the tests use a database of their own, made
// new for each call.
#include "storage/database.hpp"
#include "storage/postgres/connection.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

namespace trestle::test {

inline std::optional<storage::DatabaseOptions> pg_options() {
  const char* env = std::getenv("TRESTLE_TEST_PG");
  if (!env || !*env) return std::nullopt;
  std::string conninfo = env;
  if (conninfo.front() == '/') {
    storage::postgres::PgConnection admin("host='" + conninfo + "' user=postgres dbname=postgres");
    admin.exec("DROP DATABASE IF EXISTS trestle_unit WITH (FORCE)");
    admin.exec("CREATE DATABASE trestle_unit");
    conninfo = "host='" + conninfo + "' user=postgres dbname=trestle_unit";
  }
  storage::DatabaseOptions o;
  o.engine = storage::Dialect::postgres;
  o.pg_conninfo = conninfo;
  o.readers_ahead = 1;
  return o;
}

}  // namespace trestle::test

#define NEED_POSTGRES(opts)                                                     \
  auto opts = trestle::test::pg_options();                                      \
  if (!opts) GTEST_SKIP() << "TRESTLE_TEST_PG (a libpq conninfo) is not set"
