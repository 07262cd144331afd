// Synapse's admin API for users: the per-user rate-limit override and the user list's filters and
// orders (storage/user_admin_store on a real SQLite database).
#include "core/error.hpp"
#include "service/rate_limiter.hpp"
#include "storage/account_store.hpp"
#include "storage/database.hpp"
#include "storage/user_admin_store.hpp"
#include "temp_dir.hpp"

#include <gtest/gtest.h>

using namespace trestle;
namespace ua = storage::user_admin;

TEST(RateLimitOverride, ZeroExemptsOneKeyOnly) {
  service::RateLimiter limiter(config::RateLimit{0.1, 2});
  limiter.take("@a:x");
  limiter.take("@a:x");
  EXPECT_THROW(limiter.take("@a:x"), MatrixError);
  limiter.set_override("@a:x", config::RateLimit{0, 0});
  for (int i = 0; i < 100; ++i) EXPECT_NO_THROW(limiter.take("@a:x"));
  limiter.take("@b:x");
  limiter.take("@b:x");
  EXPECT_THROW(limiter.take("@b:x"), MatrixError);  // others keep the configured limit
}

TEST(RateLimitOverride, OwnLimitThenBackToTheConfiguredOne) {
  service::RateLimiter limiter(config::RateLimit{0.1, 2});
  limiter.set_override("@a:x", config::RateLimit{0.1, 5});
  for (int i = 0; i < 5; ++i) EXPECT_NO_THROW(limiter.take("@a:x"));
  EXPECT_THROW(limiter.take("@a:x"), MatrixError);
  limiter.set_override("@a:x", std::nullopt);  // a fresh bucket of the configured size
  limiter.take("@a:x");
  limiter.take("@a:x");
  EXPECT_THROW(limiter.take("@a:x"), MatrixError);
}

TEST(RateLimitOverride, ExemptsEvenWhenTheServerLimitIsOff) {
  service::RateLimiter limiter(config::RateLimit{0, 0});
  limiter.set_override("@a:x", config::RateLimit{0.1, 1});
  limiter.take("@a:x");
  EXPECT_THROW(limiter.take("@a:x"), MatrixError);
}

namespace {
struct Users {
  test_support::TempDir dir;
  storage::Database db{(dir.path / "t.db").string(), 1};
  void add(const std::string& id, const std::string& name, int64_t ts, bool admin = false, bool guest = false) {
    db.write([&](storage::Connection& c) {
      storage::accounts::User u;
      u.user_id = id;
      u.displayname = name;
      u.is_admin = admin;
      u.is_guest = guest;
      storage::accounts::insert_user(c, u, ts);
    });
  }
  std::vector<std::string> names(const ua::ListQuery& q, int64_t* total = nullptr) {
    auto [rows, t] = db.read([&](storage::Connection& c) { return ua::list_users(c, q); });
    if (total) *total = t;
    std::vector<std::string> out;
    for (const auto& r : rows) out.push_back(r.name);
    return out;
  }
};
}  // namespace

TEST(UserList, FiltersOrdersAndPages) {
  Users u;
  u.add("@carol:x", "Zed", 1000);
  u.add("@alice:x", "Yan", 3000, true);
  u.add("@bob:x", "100%_off", 2000);
  u.add("@7:x", "7", 4000, false, true);
  ua::ListQuery q;
  int64_t total = 0;
  EXPECT_EQ(u.names(q, &total), (std::vector<std::string>{"@7:x", "@alice:x", "@bob:x", "@carol:x"}));
  EXPECT_EQ(total, 4);
  q.guests = false;
  q.order_by = "creation_ts";
  q.backwards = true;
  EXPECT_EQ(u.names(q), (std::vector<std::string>{"@alice:x", "@bob:x", "@carol:x"}));
  q.order_by = "displayname";
  q.backwards = false;
  EXPECT_EQ(u.names(q), (std::vector<std::string>{"@bob:x", "@alice:x", "@carol:x"}));
  q.limit = 1;
  q.from = 1;
  EXPECT_EQ(u.names(q, &total), (std::vector<std::string>{"@alice:x"}));
  EXPECT_EQ(total, 3);  // the total counts every match, not the page

  ua::ListQuery by_name;
  by_name.name = "ZE";  // display name, case-insensitive
  EXPECT_EQ(u.names(by_name), (std::vector<std::string>{"@carol:x"}));
  by_name.name = "%_";  // LIKE wildcards match themselves
  EXPECT_EQ(u.names(by_name), (std::vector<std::string>{"@bob:x"}));
  by_name.name = ":x";  // the localpart only, not the server name
  EXPECT_TRUE(u.names(by_name).empty());
  ua::ListQuery admins;
  admins.admins = true;
  EXPECT_EQ(u.names(admins), (std::vector<std::string>{"@alice:x"}));
  ua::ListQuery by_id;
  by_id.user_id = "@B";
  EXPECT_EQ(u.names(by_id), (std::vector<std::string>{"@bob:x"}));
}

TEST(UserList, DeactivatedLockedAndUserTypes) {
  Users u;
  u.add("@a:x", "a", 1);
  u.add("@b:x", "b", 2);
  u.add("@c:x", "c", 3);
  u.db.write([&](storage::Connection& c) {
    storage::accounts::set_deactivated(c, "@a:x");
    storage::accounts::set_locked(c, "@b:x", true);
    ua::set_user_type(c, "@c:x", std::string("bot"));
  });
  ua::ListQuery q;
  EXPECT_EQ(u.names(q), (std::vector<std::string>{"@a:x", "@c:x"}));  // locked ones only on request
  q.deactivated = false;
  EXPECT_EQ(u.names(q), (std::vector<std::string>{"@c:x"}));
  q.deactivated = true;
  EXPECT_EQ(u.names(q), (std::vector<std::string>{"@a:x"}));
  ua::ListQuery locked;
  locked.locked = true;
  locked.not_user_types = {"bot"};
  EXPECT_EQ(u.names(locked), (std::vector<std::string>{"@a:x", "@b:x"}));
  locked.not_user_types = {""};
  EXPECT_EQ(u.names(locked), (std::vector<std::string>{"@c:x"}));
}
