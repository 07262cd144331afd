#pragma once
// The storage engine and its settings from the config's Synapse-shaped `database:` section.
#include "config/config.hpp"
#include "storage/database.hpp"

#include <algorithm>
#include <cstddef>

namespace trestle::service {

inline storage::DatabaseOptions database_options(const config::Config& c, size_t readers_ahead = 4) {
  storage::DatabaseOptions o;
  if (c.database_engine == "psycopg2") {
    o.engine = storage::Dialect::postgres;
    o.pg_conninfo = c.database_conninfo;
    // Synapse's pool bounds, for the readers; the writer is one more connection.
    o.readers_ahead = static_cast<size_t>(std::max(1, c.database_cp_min));
    o.readers_max = static_cast<size_t>(std::max(c.database_cp_min, c.database_cp_max));
    o.allow_unsafe_locale = c.database_allow_unsafe_locale;
    o.stream_writer = !c.is_worker() || c.is_event_writer();
    o.shared_stream = c.shared_stream();
  } else {
    o.sqlite_path = c.database_path;
    o.readers_ahead = readers_ahead;
  }
  return o;
}

}  // namespace trestle::service
