#include "service/password_hasher.hpp"

#include "core/error.hpp"

#include <algorithm>
#include <chrono>

namespace trestle::service {

PasswordHasher::Slot PasswordHasher::acquire(size_t bytes) {
  auto busy = [this] {
    return MatrixError(429, "M_LIMIT_EXCEEDED", "Too many password checks at once; try again shortly",
                       {{"retry_after_ms", limits_.retry_after_ms}});
  };
  std::unique_lock lock(mu_);
  // One hash bigger than the whole budget (an old 64 MiB hash) still runs, alone.
  auto fits = [&] { return in_use_ == 0 || in_use_ + bytes <= limits_.memory_budget; };
  if (queue_.empty() && fits()) {
    in_use_ += bytes;
    return Slot(*this, bytes);
  }
  if (queue_.size() >= limits_.max_waiting) throw busy();
  uint64_t ticket = next_ticket_++;
  queue_.push_back(ticket);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(limits_.max_wait_ms);
  if (!cv_.wait_until(lock, deadline, [&] { return queue_.front() == ticket && fits(); })) {
    queue_.erase(std::find(queue_.begin(), queue_.end(), ticket));
    cv_.notify_all();  // the next in line may now be first
    throw busy();
  }
  queue_.pop_front();
  in_use_ += bytes;
  cv_.notify_all();  // the next in line may fit too
  return Slot(*this, bytes);
}

void PasswordHasher::release(size_t bytes) {
  {
    std::lock_guard lock(mu_);
    in_use_ -= bytes;
  }
  cv_.notify_all();
}

std::string PasswordHasher::hash(std::string_view password) {
  Slot slot = acquire(core::kPasswordMemLimit);
  return core::hash_password(password);
}

const std::string& PasswordHasher::dummy_hash() {
  std::lock_guard lock(dummy_mu_);
  if (dummy_hash_.empty()) dummy_hash_ = hash(core::random_string(32));
  return dummy_hash_;
}

bool PasswordHasher::verify(std::string_view password, const std::optional<std::string>& encoded_hash) {
  const std::string& against = encoded_hash ? *encoded_hash : dummy_hash();
  Slot slot = acquire(core::password_hash_memory(against));
  bool ok = core::verify_password(password, against);
  return ok && encoded_hash.has_value();
}

size_t PasswordHasher::memory_in_use() {
  std::lock_guard lock(mu_);
  return in_use_;
}

size_t PasswordHasher::waiting() {
  std::lock_guard lock(mu_);
  return queue_.size();
}

}  // namespace trestle::service
