// The PostgreSQL engine behind storage::Connection. The placeholder rewrite is pure logic; the
// rest needs a server: TRESTLE_TEST_PG names a libpq conninfo of a database the test may fill
// (`scripts/postgres.sh run` starts a private one; ctest's unit_pg does), and is skipped without it.
#include "storage/database.hpp"
#include "storage/port_db.hpp"
#include "storage/postgres/connection.hpp"

#include "temp_dir.hpp"

#include "core/error.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace trestle;
using storage::postgres::number_placeholders;

TEST(PostgresPlaceholders, NumbersEachQuestionMarkOutsideQuotesAndComments) {
  int n = 0;
  EXPECT_EQ(number_placeholders("SELECT a FROM t WHERE b = ? AND c IN (?, ?)", n),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)");
  EXPECT_EQ(n, 3);
  EXPECT_EQ(number_placeholders("SELECT '?', \"odd?name\" FROM t WHERE x = ? -- why?\n AND y = ?", n),
            "SELECT '?', \"odd?name\" FROM t WHERE x = $1 -- why?\n AND y = $2");
  EXPECT_EQ(n, 2);
  EXPECT_EQ(number_placeholders("SELECT 'it''s ?' || ?", n), "SELECT 'it''s ?' || $1");
  EXPECT_EQ(n, 1);
  EXPECT_EQ(number_placeholders("UPDATE t SET a = ?1, b = ?1 WHERE c = ?2", n), "UPDATE t SET a = $1, b = $1 WHERE c = $2");
  EXPECT_EQ(n, 2);
  EXPECT_EQ(number_placeholders("SELECT 1", n), "SELECT 1");
  EXPECT_EQ(n, 0);
}

TEST(PostgresPlaceholders, DescribingTheSettingsLeavesOutThePassword) {
  auto d = storage::postgres::describe_conninfo("host='/run/pg' dbname='synapse' user='syn' password='s3cret'");
  EXPECT_NE(d.find("dbname=synapse"), std::string::npos) << d;
  EXPECT_EQ(d.find("s3cret"), std::string::npos) << d;
}

namespace {

// TRESTLE_TEST_PG: a libpq conninfo, or (scripts/postgres.sh run) the private cluster's socket
// directory, where the tests use a database of their own, made new for each test.
std::optional<storage::DatabaseOptions> pg_options() {
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

#define NEED_POSTGRES(opts)                                                     \
  auto opts = pg_options();                                                     \
  if (!opts) GTEST_SKIP() << "TRESTLE_TEST_PG (a libpq conninfo) is not set"

void fresh_table(storage::Database& db) {
  db.write([](storage::Connection& c) {
    c.exec("DROP TABLE IF EXISTS unit_t; CREATE TABLE unit_t (id BIGINT PRIMARY KEY, v TEXT, n BIGINT)");
  });
}

}  // namespace

TEST(PostgresDatabase, TypedParametersNullsAndBooleansRoundTrip) {
  NEED_POSTGRES(opts);
  storage::Database db(*opts);
  ASSERT_EQ(db.dialect(), storage::Dialect::postgres);
  fresh_table(db);
  db.write([](storage::Connection& c) {
    c.prepare("INSERT INTO unit_t (id, v, n) VALUES (?, ?, ?)").bind(int64_t{1}, std::string("a'b?"), int64_t{1} << 40).run();
    c.prepare("INSERT INTO unit_t (id, v, n) VALUES (?, ?, ?)")
        .bind(int64_t{2}, std::optional<std::string>(), std::optional<int64_t>())
        .run();
    EXPECT_EQ(c.changes(), 1);
  });
  db.read([](storage::Connection& c) {
    auto st = c.prepare("SELECT v, n, v IS NULL, ? IS NULL FROM unit_t ORDER BY id");
    st.bind(std::optional<std::string>());
    ASSERT_TRUE(st.step());
    EXPECT_EQ(st.text(0), "a'b?");
    EXPECT_EQ(st.int64(1), int64_t{1} << 40);
    EXPECT_EQ(st.int64(2), 0);
    EXPECT_EQ(st.int64(3), 1);
    ASSERT_TRUE(st.step());
    EXPECT_TRUE(st.is_null(0));
    EXPECT_FALSE(st.opt_text(1));
    EXPECT_EQ(st.int64(2), 1);
    EXPECT_FALSE(st.step());
  });
}

TEST(PostgresDatabase, AFailedWriteIsUndoneAloneAndItsGroupCommits) {
  NEED_POSTGRES(opts);
  storage::Database db(*opts);
  fresh_table(db);
  db.write([](storage::Connection& c) { c.prepare("INSERT INTO unit_t (id, v) VALUES (1, 'first')").run(); });
  // A duplicate key aborts PostgreSQL's transaction: only its savepoint is rolled back.
  EXPECT_THROW(db.write([](storage::Connection& c) {
    c.prepare("INSERT INTO unit_t (id, v) VALUES (2, 'undone')").run();
    c.prepare("INSERT INTO unit_t (id, v) VALUES (1, 'duplicate')").run();
  }),
               std::runtime_error);
  db.write([](storage::Connection& c) { c.prepare("INSERT INTO unit_t (id, v) VALUES (3, 'third')").run(); });
  auto values = db.read([](storage::Connection& c) {
    std::vector<std::string> out;
    auto st = c.prepare("SELECT v FROM unit_t ORDER BY id");
    while (st.step()) out.push_back(st.text(0));
    return out;
  });
  EXPECT_EQ(values, (std::vector<std::string>{"first", "third"}));
}

TEST(PostgresDatabase, StreamPositionsSurviveAReopen) {
  NEED_POSTGRES(opts);
  int64_t position = 0;
  {
    storage::Database db(*opts);
    position = db.write([&](storage::Connection&) { return db.next_stream_position(); });
    EXPECT_EQ(db.committed_position(), position);
  }
  storage::Database again(*opts);
  EXPECT_EQ(again.committed_position(), position);
}

TEST(PostgresDatabase, AServerThatIsGoneAnswers503AndTheWriterReconnects) {
  NEED_POSTGRES(opts);
  storage::Database db(*opts);
  fresh_table(db);
  // Every other connection to this database is ended, as a PostgreSQL restart would.
  auto kill = [&] {
    storage::postgres::PgConnection admin(opts->pg_conninfo);
    admin.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
               " AND pid <> pg_backend_pid()");
  };
  kill();
  try {
    db.write([](storage::Connection& c) { c.prepare("INSERT INTO unit_t (id) VALUES (1)").run(); });
    ADD_FAILURE() << "a write on a terminated connection succeeded";
  } catch (const MatrixError& e) {
    EXPECT_EQ(e.status(), 503);
  }
  // The next write opens a new connection; the failed one left nothing behind.
  db.write([](storage::Connection& c) { c.prepare("INSERT INTO unit_t (id) VALUES (2)").run(); });
  kill();
  try {
    db.read([](storage::Connection& c) { c.prepare("SELECT 1").run(); });
    ADD_FAILURE() << "a read on a terminated connection succeeded";
  } catch (const MatrixError& e) {
    EXPECT_EQ(e.status(), 503);
  }
  auto count = db.read([](storage::Connection& c) {
    auto st = c.prepare("SELECT count(*), min(id) FROM unit_t");
    st.step();
    return std::make_pair(st.int64(0), st.int64(1));
  });
  EXPECT_EQ(count, std::make_pair(int64_t{1}, int64_t{2}));
}

TEST(PostgresPortDb, AnInterruptedPortResumesAndTheNextRunCopiesEverythingAnew) {
  NEED_POSTGRES(opts);
  test_support::TempDir dir;
  const std::string sqlite_path = (dir.path / "homeserver.db").string();
  {
    storage::Database source(sqlite_path, 0);
    source.write([](storage::Connection& c) {
      for (int i = 0; i < 55; ++i) {
        c.prepare("INSERT INTO users (user_id, created_ts) VALUES (?, ?)").bind("@u" + std::to_string(i) + ":x", i).run();
      }
    });
  }
  storage::port::Options port;
  port.sqlite_path = sqlite_path;
  port.target = *opts;
  port.batch_rows = 10;
  // Killed after two batches of users were committed.
  int user_batches = 0;
  port.progress = [&](const std::string& line) {
    if (line.rfind("users:", 0) == 0 && ++user_batches == 2) throw std::runtime_error("killed");
  };
  EXPECT_THROW(storage::port::sqlite_to_postgres(port), std::runtime_error);
  port.progress = nullptr;
  auto find = [](const std::vector<storage::port::TableResult>& results, const std::string& table) {
    for (const auto& r : results) {
      if (r.table == table) return r;
    }
    return storage::port::TableResult{};
  };
  auto resumed = storage::port::sqlite_to_postgres(port);
  auto users = find(resumed, "users");
  EXPECT_EQ(users.copied, 35);  // the 20 committed before the kill stay
  EXPECT_EQ(users.source_rows, 55);
  EXPECT_EQ(users.target_rows, 55);
  for (const auto& r : resumed) EXPECT_TRUE(r.ok()) << r.table;
  // A row deleted on SQLite since: gone on PostgreSQL after the next run too.
  {
    storage::Database source(sqlite_path, 0);
    source.write([](storage::Connection& c) { c.exec("DELETE FROM users WHERE user_id = '@u3:x'"); });
  }
  auto again = find(storage::port::sqlite_to_postgres(port), "users");
  EXPECT_EQ(again.copied, 54);
  EXPECT_EQ(again.target_rows, 54);
}
