#pragma once
// All services of one homeserver, built once at start and shared by the handlers.
#include "config/config.hpp"
#include "core/clock.hpp"
#include "core/crypto.hpp"
#include "service/accounts.hpp"
#include "service/appservice/queries.hpp"
#include "service/appservice/sender.hpp"
#include "service/key_backup.hpp"
#include "service/keys.hpp"
#include "service/media/media_service.hpp"
#include "service/notifier.hpp"
#include "service/presence.hpp"
#include "service/presence_sync.hpp"
#include "service/push/pusher_service.hpp"
#include "service/rooms.hpp"
#include "service/sync.hpp"
#include "service/to_device.hpp"
#include "service/user_data.hpp"
#include "storage/database.hpp"

namespace trestle::service {

struct Homeserver {
  // `http` is how the server calls out (appservices); main gives it the HTTP client.
  Homeserver(config::Config cfg, core::SigningKey key, OutboundHttp http)
      : config(std::move(cfg)),
        signing_key(std::move(key)),
        appservices(load_appservices(config)),
        db(config.database_path),
        accounts(config, db, appservices),
        rooms(config, db, notifier, signing_key, accounts),
        user_data(db, notifier, rooms),
        sync(db, notifier, user_data),
        keys(config, db, notifier, accounts),
        appservice_queries(appservices, http),
        appservice_sender(appservices, db, notifier, http),
        push(db, notifier, http),
        media(config, db),
        to_device(config, db, notifier),
        key_backup(db) {
    sync.set_to_device(&to_device);
    accounts.ensure_appservice_senders();
    accounts.set_device_hooks({[this](storage::Connection& c, const std::string& u) { keys.on_devices_changed(c, u); },
                               [this](const std::string& u) { keys.notify_changed(u); }});
    sync.set_keys(&keys);
    rooms.set_appservice_queries(&appservice_queries);
    user_data.typing().set_listener([this](const std::string& room_id) { appservice_sender.on_typing(room_id); });
    appservice_sender.set_typing_source(
        [this](const std::string& room_id) { return user_data.typing().typing_users(room_id); });
    presence.set_listener([this](const std::string& user_id) { appservice_sender.on_presence(user_id); });
    if (config.use_presence) {
      sync.set_presence(&presence);
      // A presence change wakes the /syncs of the user and of everyone sharing a room with them.
      presence.set_listener([this](const std::string& user_id) {
        notifier.notify(db.read([&](storage::Connection& c) { return presence_wake_keys(c, user_id); }));
      });
    }
    appservice_sender.set_presence_source([this](const std::string& user_id) {
      auto p = presence.get(user_id);
      boost::json::object content{{"presence", p.presence},
                                  {"last_active_ago", std::max<int64_t>(0, core::now_ms() - p.last_active_ts)},
                                  {"currently_active", p.presence == "online"}};
      if (p.status_msg) content["status_msg"] = *p.status_msg;
      return content;
    });
  }

  static AppServiceRegistry load_appservices(const config::Config& cfg) {
    AppServiceRegistry r;
    r.load(cfg.app_service_config_files, cfg.server_name);
    return r;
  }

  config::Config config;
  core::SigningKey signing_key;
  AppServiceRegistry appservices;
  storage::Database db;
  Notifier notifier;
  AccountService accounts;
  RoomService rooms;
  UserDataService user_data;
  SyncService sync;
  KeyService keys;
  PresenceTracker presence;
  AppServiceQueries appservice_queries;
  AppServiceSender appservice_sender;
  PushService push;
  media::MediaService media;
  ToDeviceService to_device;
  KeyBackupService key_backup;
};

}  // namespace trestle::service
