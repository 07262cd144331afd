#pragma once
// All services of one homeserver, built once at start and shared by the handlers.
#include "config/config.hpp"
#include "core/crypto.hpp"
#include "service/accounts.hpp"
#include "service/notifier.hpp"
#include "service/rooms.hpp"
#include "service/sync.hpp"
#include "service/user_data.hpp"
#include "storage/database.hpp"

namespace trestle::service {

struct Homeserver {
  Homeserver(config::Config cfg, core::SigningKey key)
      : config(std::move(cfg)),
        signing_key(std::move(key)),
        db(config.database_path),
        accounts(config, db),
        rooms(config, db, notifier, signing_key, accounts),
        user_data(db, notifier, rooms),
        sync(db, notifier, user_data) {}

  config::Config config;
  core::SigningKey signing_key;
  storage::Database db;
  Notifier notifier;
  AccountService accounts;
  RoomService rooms;
  UserDataService user_data;
  SyncService sync;
};

}  // namespace trestle::service
