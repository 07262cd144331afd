// The PostgreSQL engine behind storage::Connection. The placeholder rewrite is pure logic; the
// rest needs a server: TRESTLE_TEST_PG names a libpq conninfo of a database the test may fill
// (`scripts/postgres.sh run` starts a private one; ctest's unit_pg does), and is skipped without it.
#include "service/search.hpp"
#include "storage/database.hpp"
#include "storage/port_db.hpp"
#include "storage/postgres/connection.hpp"
#include "storage/search_store.hpp"

#include "temp_dir.hpp"

#include "core/error.hpp"

#include "pg_test_database.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
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

// A PostgreSQL restart ends every session. A connection that finds its session gone at BEGIN
// (nothing of the transaction sent yet) connects again and carries on; one that loses it inside a
// transaction fails that transaction with 503 M_UNKNOWN, nothing of it written, and the next
// transaction connects again.
TEST(PostgresDatabase, AServerThatIsGoneAnswers503AndTheConnectionsReconnect) {
  NEED_POSTGRES(opts);
  storage::Database db(*opts);
  fresh_table(db);
  // Every other connection to this database is ended, as a PostgreSQL restart would, and gone
  // when this returns (pg_terminate_backend's wait).
  auto kill = [&] {
    storage::postgres::PgConnection admin(opts->pg_conninfo);
    admin.exec("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE datname = current_database()"
               " AND pid <> pg_backend_pid()");
  };
  kill();
  db.write([](storage::Connection& c) { c.prepare("INSERT INTO unit_t (id) VALUES (1)").run(); });
  db.read([](storage::Connection& c) { c.prepare("SELECT 1").run(); });
  try {
    db.write([&](storage::Connection& c) {
      c.prepare("INSERT INTO unit_t (id) VALUES (2)").run();
      c.flush();
      kill();
      c.prepare("INSERT INTO unit_t (id) VALUES (3)").run();
    });
    ADD_FAILURE() << "a write whose connection was ended halfway succeeded";
  } catch (const MatrixError& e) {
    EXPECT_EQ(e.status(), 503);
    EXPECT_EQ(e.errcode(), "M_UNKNOWN");
  }
  try {
    db.read([&](storage::Connection& c) {
      kill();
      c.prepare("SELECT 1").run();
    });
    ADD_FAILURE() << "a read whose connection was ended halfway succeeded";
  } catch (const MatrixError& e) {
    EXPECT_EQ(e.status(), 503);
  }
  db.write([](storage::Connection& c) { c.prepare("INSERT INTO unit_t (id) VALUES (4)").run(); });
  auto rows = db.read([](storage::Connection& c) {
    auto st = c.prepare("SELECT string_agg(id::text, ',' ORDER BY id) FROM unit_t");
    st.step();
    return st.text(0);
  });
  EXPECT_EQ(rows, "1,4");
}

// A COMMIT that took effect on the server but whose answer was lost with the connection (the
// server restarted right after writing it) is a success: the writer asks the server, once it can
// reach it again, whether the transaction committed. Made here with a synchronous standby that
// never comes: the COMMIT is written, then waits for it, and its session is ended while it waits.
TEST(PostgresDatabase, ACommitThatTookEffectBeforeItsConnectionWasLostSucceeds) {
  NEED_POSTGRES(opts);
  storage::Database db(*opts);
  fresh_table(db);
  storage::postgres::PgConnection admin(opts->pg_conninfo);
  auto reset_standby = [&] {
    admin.exec("ALTER SYSTEM RESET synchronous_standby_names");
    admin.exec("SELECT pg_reload_conf()");
  };
  admin.exec("ALTER SYSTEM SET synchronous_standby_names = 'nobody'");
  admin.exec("SELECT pg_reload_conf()");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the backends' SIGHUP
  bool killed = false;
  std::thread killer([&] {
    storage::postgres::PgConnection watcher(opts->pg_conninfo);
    for (int i = 0; i < 200; ++i) {
      auto st = watcher.prepare("SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'");
      if (st.step()) {
        int64_t pid = st.int64(0);
        st.step();
        watcher.exec("SELECT pg_terminate_backend(" + std::to_string(pid) + ", 10000)");
        killed = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    // Only now: a standby no longer wanted releases every waiting COMMIT, and the session could
    // hear of its success.
    storage::postgres::PgConnection(opts->pg_conninfo).exec("ALTER SYSTEM RESET synchronous_standby_names");
    storage::postgres::PgConnection(opts->pg_conninfo).exec("SELECT pg_reload_conf()");
  });
  int64_t position = 0;
  try {
    position = db.write([&](storage::Connection& c) {
      c.prepare("INSERT INTO unit_t (id) VALUES (1)").run();
      return db.next_stream_position();
    });
  } catch (const std::exception& e) {
    ADD_FAILURE() << "the write failed: " << e.what();
  }
  killer.join();
  reset_standby();
  EXPECT_TRUE(killed) << "no COMMIT waited for the standby: the connection was never lost";
  EXPECT_EQ(db.committed_position(), position);
  // The stream goes on after it: the position is not handed out twice.
  int64_t next = db.write([&](storage::Connection& c) {
    c.prepare("INSERT INTO unit_t (id) VALUES (2)").run();
    return db.next_stream_position();
  });
  EXPECT_EQ(next, position + 1);
  auto rows = db.read([](storage::Connection& c) {
    auto st = c.prepare("SELECT count(*) FROM unit_t");
    st.step();
    return st.int64(0);
  });
  EXPECT_EQ(rows, 2);
}

// POST /search on PostgreSQL's full-text search (storage/search_store.cpp, the event_search table
// of storage/postgres/schema.cpp) finds what FTS5 finds (the same checks pass on both engines):
// diacritics folded (and nothing else), phrases, OR and exclusion, rank, each room's upper bound in
// the count; highlights are the words as written, not as folded.
namespace {

void check_search(storage::Database& db) {
  const std::vector<std::pair<std::string, std::string>> bodies{
      {"!r:x", "Crème Brûlée à Paris"}, {"!r:x", "creme fraiche"}, {"!r:x", "Grüße aus München"},
      {"!o:x", "fox fox fox creme"}, {"!r:x", "the quick brown fox"}};
  db.write([&](storage::Connection& c) {
    for (size_t i = 0; i < bodies.size(); ++i) {
      storage::events::StoredEvent e;
      e.stream_ordering = static_cast<int64_t>(i) + 1;
      e.room_id = bodies[i].first;
      e.type = "m.room.message";
      e.pdu = boost::json::object{{"content", boost::json::object{{"body", bodies[i].second}}}};
      storage::search::index_event(c, e);
    }
  });
  const std::vector<std::string> rooms{"!r:x", "!o:x"}, keys{"content.body"};
  auto find = [&](const std::string& term, storage::search::Order order = storage::search::Order::recent) {
    return db.read([&](storage::Connection& c) {
      std::vector<int64_t> out;
      storage::search::for_each_match(c, *service::fts_query(term), rooms, keys, order, 0, std::nullopt,
                                      [&](const storage::search::Match& m) {
                                        out.push_back(m.stream_ordering);
                                        return true;
                                      });
      return out;
    });
  };
  using V = std::vector<int64_t>;
  EXPECT_EQ(find("CREME"), (V{4, 2, 1}));
  EXPECT_EQ(find("brulee -paris"), V{});
  EXPECT_EQ(find("brulee or fraiche"), (V{2, 1}));
  EXPECT_EQ(find("\"crème brûlée\""), V{1});
  EXPECT_EQ(find("\"brulee creme\""), V{});
  EXPECT_EQ(find("grusse"), V{});  // FTS5 leaves ß alone
  EXPECT_EQ(find("MUNCHEN"), V{3});
  EXPECT_EQ(find("fox", storage::search::Order::rank), (V{4, 5}));
  db.read([&](storage::Connection& c) {
    EXPECT_EQ(storage::search::matched_terms(c, *service::fts_query("creme brulee -fraiche"), 1),
              (std::vector<std::string>{"Crème", "Brûlée"}));
    EXPECT_EQ(storage::search::matched_terms(c, *service::fts_query("munchen"), 3), std::vector<std::string>{"München"});
    EXPECT_EQ(storage::search::count_matches(c, *service::fts_query("creme"), keys, {{"!r:x", 1}, {"!o:x", 4}}), 2);
  });
  // More matches than PostgreSQL reads at once in the recent order: all of them, newest first.
  db.write([&](storage::Connection& c) {
    for (int64_t pos = 100; pos < 250; ++pos) {
      storage::events::StoredEvent e;
      e.stream_ordering = pos;
      e.room_id = "!r:x";
      e.type = "m.room.message";
      e.pdu = boost::json::object{{"content", boost::json::object{{"body", "many wombats"}}}};
      storage::search::index_event(c, e);
    }
  });
  V many = find("wombats");
  ASSERT_EQ(many.size(), 150u);
  EXPECT_EQ(many.front(), 249);
  EXPECT_TRUE(std::is_sorted(many.rbegin(), many.rend()));
}

}  // namespace

TEST(PostgresSearch, FoldsDiacriticsAsFts5AndHighlightsTheWordsAsWritten) {
  NEED_POSTGRES(opts);
  storage::Database db(*opts);
  check_search(db);
}

TEST(PostgresSearch, TheSameHoldsOnSqlite) {
  test_support::TempDir dir;
  storage::Database db((dir.path / "t.db").string());
  check_search(db);
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

TEST(PostgresDatabase, ACollationOtherThanCIsRefusedUnlessAllowed) {
  NEED_POSTGRES(opts);
  const char* dir = std::getenv("TRESTLE_TEST_PG");
  if (dir[0] != '/') GTEST_SKIP() << "needs scripts/postgres.sh's cluster (a socket directory) to make a database";
  {
    storage::postgres::PgConnection admin("host='" + std::string(dir) + "' user=postgres dbname=postgres");
    admin.exec("DROP DATABASE IF EXISTS trestle_unit_locale WITH (FORCE)");
    admin.exec("CREATE DATABASE trestle_unit_locale TEMPLATE template0 LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'");
  }
  auto options = *opts;
  options.pg_conninfo = "host='" + std::string(dir) + "' user=postgres dbname=trestle_unit_locale";
  try {
    storage::Database refused(options);
    ADD_FAILURE() << "a database with LC_COLLATE C.UTF-8 was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("allow_unsafe_locale"), std::string::npos) << e.what();
  }
  options.allow_unsafe_locale = true;
  storage::Database allowed(options);
  EXPECT_EQ(allowed.committed_position(), 0);
}
