#include "service/user_directory.hpp"

#include "storage/user_directory_store.hpp"

namespace trestle::service {

std::vector<DirectoryUser> UserDirectory::search(const std::string& searcher, const std::string& term, int64_t limit) {
  auto users = db_.read([&](storage::Connection& c) {
    return storage::user_directory::search(c, searcher, term, limit, cfg_.user_directory_search_all_users);
  });
  std::vector<DirectoryUser> out;
  out.reserve(users.size());
  for (auto& u : users) out.push_back({std::move(u.user_id), std::move(u.displayname), std::move(u.avatar_url)});
  return out;
}

}  // namespace trestle::service
