#include "service/notifier.hpp"

#include <algorithm>

namespace trestle::service {

uint64_t Notifier::position() const {
  std::lock_guard lock(mu_);
  return position_;
}

void Notifier::notify(const std::vector<std::string>& keys) {
  wake(keys);
  Publisher publish;
  {
    std::lock_guard lock(mu_);
    publish = publisher_;
  }
  if (publish) publish(keys);
}

void Notifier::notify_from_peer(const std::vector<std::string>& keys) { wake(keys); }

void Notifier::set_publisher(Publisher publisher) {
  std::lock_guard lock(mu_);
  publisher_ = std::move(publisher);
}

void Notifier::wake_all() {
  std::vector<Callback> to_run;
  {
    std::lock_guard lock(mu_);
    ++position_;
    to_run = global_listeners_;
    for (auto& [key, pos] : key_position_) pos = position_;
    for (auto& [id, w] : waiters_) {
      for (const auto& k : w.keys) key_position_[k] = position_;
      to_run.push_back(std::move(w.cb));
    }
    waiters_.clear();
    waiters_by_key_.clear();
  }
  for (auto& cb : to_run) cb();
}

void Notifier::wake(const std::vector<std::string>& keys) {
  std::vector<Callback> to_run;
  {
    std::lock_guard lock(mu_);
    ++position_;
    to_run = global_listeners_;
    std::vector<uint64_t> fired;
    for (const auto& key : keys) {
      key_position_[key] = position_;
      auto it = waiters_by_key_.find(key);
      if (it == waiters_by_key_.end()) continue;
      fired.insert(fired.end(), it->second.begin(), it->second.end());
    }
    for (uint64_t id : fired) {
      auto w = waiters_.find(id);
      if (w == waiters_.end()) continue;  // already taken via another of its keys
      to_run.push_back(std::move(w->second.cb));
      remove_locked(id);
    }
  }
  for (auto& cb : to_run) cb();
}

uint64_t Notifier::wait(const std::vector<std::string>& keys, uint64_t since, Callback cb) {
  {
    std::lock_guard lock(mu_);
    bool already = std::any_of(keys.begin(), keys.end(), [&](const std::string& k) {
      auto it = key_position_.find(k);
      return it != key_position_.end() && it->second > since;
    });
    if (!already) {
      uint64_t id = next_waiter_id_++;
      for (const auto& k : keys) waiters_by_key_[k].insert(id);
      waiters_.emplace(id, Waiter{keys, std::move(cb)});
      return id;
    }
  }
  cb();
  return 0;
}

void Notifier::add_global_listener(Callback cb) {
  std::lock_guard lock(mu_);
  global_listeners_.push_back(std::move(cb));
}

void Notifier::cancel(uint64_t id) {
  std::lock_guard lock(mu_);
  remove_locked(id);
}

void Notifier::drop_waiters() {
  std::unordered_map<uint64_t, Waiter> dropped;
  {
    std::lock_guard lock(mu_);
    dropped.swap(waiters_);
    waiters_by_key_.clear();
  }
  // `dropped` (and the callbacks' captures) are destroyed here, outside the lock.
}

size_t Notifier::waiter_count() const {
  std::lock_guard lock(mu_);
  return waiters_.size();
}

void Notifier::remove_locked(uint64_t id) {
  auto w = waiters_.find(id);
  if (w == waiters_.end()) return;
  for (const auto& k : w->second.keys) {
    auto it = waiters_by_key_.find(k);
    if (it == waiters_by_key_.end()) continue;
    it->second.erase(id);
    if (it->second.empty()) waiters_by_key_.erase(it);
  }
  waiters_.erase(w);
}

}  // namespace trestle::service
