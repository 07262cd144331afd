// The `database:` section in Synapse's shape: sqlite3 (the default) and psycopg2 (PostgreSQL, its
// args as a libpq connection string), the pool bounds, and the errors for bad values.
#include "config/config.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using namespace trestle;

namespace {
config::Config parse(const std::string& database, std::vector<std::string>* warnings_out = nullptr) {
  std::vector<std::string> warnings;
  auto c = config::parse_config("server_name: example.org\n" + database, "/etc/trestle", warnings);
  if (warnings_out) {
    *warnings_out = warnings;
  } else {
    for (const auto& w : warnings) ADD_FAILURE() << w;
  }
  return c;
}

std::string error_of(const std::string& database) {
  try {
    parse(database);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(no error)";
}
}  // namespace

TEST(DatabaseConfig, SqliteIsTheDefault) {
  auto c = parse("");
  EXPECT_EQ(c.database_engine, "sqlite3");
  EXPECT_EQ(c.database_path, "/etc/trestle/homeserver.db");
  EXPECT_EQ(c.database_conninfo, "");
  EXPECT_EQ(c.database_cp_min, 5);
  EXPECT_EQ(c.database_cp_max, 10);
  EXPECT_EQ(c.media_store_path, "/etc/trestle/media");
}

TEST(DatabaseConfig, SqlitePathAgainstTheConfigDirectory) {
  auto c = parse("database:\n  name: sqlite3\n  args:\n    database: data/hs.db\n    cp_min: 1\n    cp_max: 1\n");
  EXPECT_EQ(c.database_path, "/etc/trestle/data/hs.db");
  EXPECT_EQ(c.media_store_path, "/etc/trestle/data/media");
  EXPECT_EQ(c.database_cp_max, 1);
}

TEST(DatabaseConfig, SynapsesPostgresConfig) {
  // As Synapse's docs write it.
  auto c = parse(
      "database:\n"
      "  name: psycopg2\n"
      "  txn_limit: 10000\n"
      "  allow_unsafe_locale: true\n"
      "  args:\n"
      "    user: synapse_user\n"
      "    password: secretpassword\n"
      "    database: synapse\n"
      "    host: localhost\n"
      "    port: 5432\n"
      "    cp_min: 2\n"
      "    cp_max: 20\n"
      "    keepalives_idle: 10\n"
      "    keepalives_interval: 10\n"
      "    keepalives_count: 3\n");
  EXPECT_EQ(c.database_engine, "psycopg2");
  EXPECT_EQ(c.database_conninfo,
            "user='synapse_user' password='secretpassword' dbname='synapse' host='localhost' port='5432' "
            "keepalives_idle='10' keepalives_interval='10' keepalives_count='3'");
  EXPECT_EQ(c.database_cp_min, 2);
  EXPECT_EQ(c.database_cp_max, 20);
  EXPECT_TRUE(c.database_allow_unsafe_locale);
  EXPECT_EQ(c.database_path, "");
  EXPECT_EQ(c.media_store_path, "/etc/trestle/media");
}

TEST(DatabaseConfig, PostgresUnixSocketDbnameSslAndApplicationName) {
  auto c = parse(
      "database:\n  name: psycopg2\n  args:\n    host: /var/run/postgresql\n    dbname: trestle\n"
      "    sslmode: disable\n    application_name: trestle main\n");
  EXPECT_EQ(c.database_conninfo,
            "host='/var/run/postgresql' dbname='trestle' sslmode='disable' application_name='trestle main'");
  EXPECT_EQ(c.database_cp_min, 5);
  EXPECT_EQ(c.database_cp_max, 10);
}

TEST(DatabaseConfig, ConninfoValuesAreQuoted) {
  auto c = parse("database:\n  name: psycopg2\n  args:\n    user: o'brien\n    password: \"a\\\\b' c=d\"\n");
  EXPECT_EQ(c.database_conninfo, R"(user='o\'brien' password='a\\b\' c=d')");
}

TEST(DatabaseConfig, UnknownKeysAreWarnedAboutNotRefused) {
  std::vector<std::string> warnings;
  auto c = parse("database:\n  name: psycopg2\n  colour: blue\n  args:\n    database: hs\n    frobnicate: 1\n"
                 "    cp_reconnect: true\n",
                 &warnings);
  EXPECT_EQ(c.database_conninfo, "dbname='hs'");
  EXPECT_EQ(warnings, (std::vector<std::string>{"unknown config key 'database.colour' ignored",
                                                "unknown config key 'database.args.frobnicate' ignored"}));
}

TEST(DatabaseConfig, MediaStorePathGivenWins) {
  auto c = parse("database:\n  name: psycopg2\n  args: {database: hs}\nmedia_store_path: /srv/media\n");
  EXPECT_EQ(c.media_store_path, "/srv/media");
}

TEST(DatabaseConfig, BadValuesNameTheKey) {
  const std::pair<const char*, const char*> cases[] = {  // the database section, the key the error names
      {"database:\n  name: mysql\n", "'database.name': must be 'sqlite3' or 'psycopg2'"},
      {"database: 3\n", "'database'"},
      {"database:\n  name: psycopg2\n  args: [1]\n", "'database.args'"},
      {"database:\n  name: psycopg2\n  args: {port: 70000}\n", "'database.args.port'"},
      {"database:\n  name: psycopg2\n  args: {port: x}\n", "'database.args.port'"},
      {"database:\n  name: psycopg2\n  args: {cp_min: 11}\n", "'database.args.cp_min'"},
      {"database:\n  name: psycopg2\n  args: {cp_max: 0, cp_min: 0}\n", "'database.args.cp_max'"},
      {"database:\n  name: psycopg2\n  args: {cp_max: -1}\n", "'database.args.cp_max'"},
      {"database:\n  name: psycopg2\n  args: {database: a, dbname: b}\n", "'database.args.dbname'"},
      {"database:\n  name: psycopg2\n  args: {sslmode: maybe}\n", "'database.args.sslmode'"},
      {"database:\n  name: psycopg2\n  args: {host: [a, b]}\n", "'database.args.host'"},
      {"database:\n  name: sqlite3\n  allow_unsafe_locale: maybe\n", "'database.allow_unsafe_locale'"},
  };
  for (const auto& [yaml, key] : cases) {
    EXPECT_NE(error_of(yaml).find(key), std::string::npos) << yaml << " gave: " << error_of(yaml);
  }
}

TEST(DatabaseConfig, GeneratedConfigShowsPostgres) {
  auto text = config::generate_config("example.org", "/var/lib/trestle");
  EXPECT_NE(text.find("#   name: psycopg2"), std::string::npos);
  std::vector<std::string> warnings;
  auto c = config::parse_config(text, "/etc/trestle", warnings);
  EXPECT_EQ(c.database_engine, "sqlite3");
  EXPECT_EQ(c.database_path, "/var/lib/trestle/homeserver.db");
}
