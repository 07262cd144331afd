#include "service/threads.hpp"

#include "core/error.hpp"
#include "storage/relation_store.hpp"
#include "storage/thread_store.hpp"

#include <algorithm>

namespace trestle::service::threads {

namespace ev = storage::events;

namespace {

std::optional<Relation> relation_of_event(const ev::StoredEvent& e) {
  auto* c = e.pdu.if_contains("content");
  if (!c || !c->is_object()) return std::nullopt;
  return relation_of(c->as_object());
}

}  // namespace

std::optional<Relation> relation_of(const boost::json::object& content) {
  auto* rel = content.if_contains("m.relates_to");
  if (!rel || !rel->is_object()) return std::nullopt;
  auto* type = rel->as_object().if_contains("rel_type");
  auto* id = rel->as_object().if_contains("event_id");
  if (!type || !type->is_string() || !id || !id->is_string() || id->as_string().empty()) return std::nullopt;
  return Relation{std::string(type->as_string()), std::string(id->as_string())};
}

std::string thread_of(storage::Connection& c, const ev::StoredEvent& e) {
  auto rel = relation_of_event(e);
  for (int hop = 0; rel; ++hop) {
    if (rel->rel_type == "m.thread") return rel->event_id;
    if (hop + 1 >= kMaxHops) break;
    auto parent = ev::get_event(c, rel->event_id);
    if (!parent || parent->room_id != e.room_id) break;
    rel = relation_of_event(*parent);
  }
  return kMain;
}

int64_t ReadPositions::effective(const std::string& thread_id) const {
  auto it = thread.find(thread_id);
  return it == thread.end() ? unthreaded : std::max(unthreaded, it->second);
}

ReadPositions read_positions(storage::Connection& c, const std::string& room_id, const std::string& user_id) {
  ReadPositions out;
  for (const auto& p : storage::threads::read_positions(c, room_id, user_id)) {
    if (p.thread_id.empty()) out.unthreaded = p.stream_ordering;
    else out.thread[p.thread_id] = p.stream_ordering;
  }
  return out;
}

void check_receipt_thread(storage::Connection& c, const ev::StoredEvent& e, const std::string& thread_id) {
  if (thread_id == kMain) {
    // As Synapse: an event that is directly a thread reply is not in the main timeline.
    auto rel = relation_of_event(e);
    if (!rel || rel->rel_type != "m.thread") return;
  } else if (thread_of(c, e) == thread_id) {
    return;
  } else if (e.event_id == thread_id && !e.redacted_by &&
             storage::relations::has_child_matching(c, e.event_id, {"m.thread"}, {})) {
    return;  // the thread root itself
  }
  throw MatrixError::invalid_param("event_id " + e.event_id + " is not related to thread " + thread_id);
}

}  // namespace trestle::service::threads
