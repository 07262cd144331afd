#include "service/room_creators.hpp"

#include "room/room_version.hpp"
#include "storage/event_store.hpp"
#include "storage/room_store.hpp"

namespace trestle::service {

std::vector<std::string> privileged_creators(storage::Connection& c, const std::string& room_id) {
  std::vector<std::string> creators;
  auto row = storage::rooms::get_room(c, room_id);
  const auto* version = row ? room::find_room_version(row->room_version) : nullptr;
  if (!version || !version->privileged_creators) return creators;
  auto id = storage::events::current_state_event_id(c, room_id, "m.room.create", "");
  auto create = id ? storage::events::get_event(c, *id) : std::nullopt;
  if (!create) return creators;
  creators.push_back(create->sender);
  auto* content = create->pdu.if_contains("content");
  auto* additional = content && content->is_object() ? content->as_object().if_contains("additional_creators") : nullptr;
  if (additional && additional->is_array()) {
    for (const auto& u : additional->as_array()) {
      if (u.is_string()) creators.emplace_back(u.as_string());
    }
  }
  return creators;
}

}  // namespace trestle::service
