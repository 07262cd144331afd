#pragma once
// The room services, one per concern, sharing the one event write path (service/event_writer):
// reading (history), aliases and the directory, membership, creation, and client sends.
#include "service/event_writer.hpp"
#include "service/rooms/creation.hpp"
#include "service/rooms/directory.hpp"
#include "service/rooms/history.hpp"
#include "service/rooms/membership.hpp"
#include "service/rooms/sending.hpp"

namespace trestle::service {

class AccountService;

struct Rooms {
  Rooms(const config::Config& cfg, storage::Database& db, Notifier& notifier, const core::SigningKey& key,
        AccountService& accounts)
      : writer(cfg, db, notifier, key),
        history(db),
        directory(cfg, db, writer, accounts),
        membership(cfg, db, writer, accounts, directory, history),
        creation(cfg, db, writer, accounts, membership),
        sending(cfg, db, writer, membership) {}

  // Unknown users and aliases in an appservice's namespace are asked about before a 404.
  void set_appservice_queries(const AppServiceQueries* q) {
    directory.set_appservice_queries(q);
    membership.set_appservice_queries(q);
    creation.set_appservice_queries(q);
  }

  EventWriter writer;
  RoomHistory history;
  RoomDirectory directory;
  MembershipService membership;
  RoomCreation creation;
  RoomSending sending;
};

}  // namespace trestle::service
