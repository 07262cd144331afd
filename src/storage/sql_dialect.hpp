#pragma once
// SQL fragments where SQLite and PostgreSQL really differ (JSON paths, planner hints), for the
// stores; everything else is one portable SQL string. Columns, paths and index names are the
// caller's literals, never user input.
#include "storage/database.hpp"

#include <initializer_list>
#include <string>
#include <string_view>

namespace trestle::storage::sql {

// The JSON path of `keys` as the engine writes it: SQLite `$.content."m.federate"`, PostgreSQL
// `{content,"m.federate"}` (for #> and #>>).
inline std::string json_path(Dialect d, std::initializer_list<std::string_view> keys) {
  std::string out = d == Dialect::sqlite ? "$" : "{";
  bool first = true;
  for (auto key : keys) {
    if (d == Dialect::sqlite) {
      out += '.';
    } else if (!first) {
      out += ',';
    }
    first = false;
    out += '"';
    out += key;
    out += '"';
  }
  if (d == Dialect::postgres) out += '}';
  return out;
}

// The value at `keys` of the JSON text in `column`, as text (NULL when absent).
inline std::string json_value(Dialect d, const std::string& column, std::initializer_list<std::string_view> keys) {
  if (d == Dialect::sqlite) return "json_extract(" + column + ", '" + json_path(d, keys) + "')";
  return "(" + column + "::jsonb #>> '" + json_path(d, keys) + "')";
}

// The string at `keys` of the JSON text in `column`; NULL when absent or not a string (and on
// SQLite when the column is no JSON at all: PostgreSQL fails the statement instead).
inline std::string json_string(Dialect d, const std::string& column, std::initializer_list<std::string_view> keys) {
  const std::string path = "'" + json_path(d, keys) + "'";
  if (d == Dialect::sqlite) {
    return "CASE WHEN json_valid(" + column + ") AND json_type(" + column + ", " + path +
           ") = 'text' THEN json_extract(" + column + ", " + path + ") END";
  }
  return "CASE WHEN jsonb_typeof(" + column + "::jsonb #> " + path + ") = 'string' THEN " + column +
         "::jsonb #>> " + path + " END";
}

// Whether the value at `keys` of the JSON text in `column` is `false`.
inline std::string json_is_false(Dialect d, const std::string& column, std::initializer_list<std::string_view> keys) {
  const std::string path = "'" + json_path(d, keys) + "'";
  if (d == Dialect::sqlite) return "(json_valid(" + column + ") AND json_type(" + column + ", " + path + ") = 'false')";
  return "(" + column + "::jsonb #> " + path + " = 'false'::jsonb)";
}

// SQLite's planner hint ` INDEXED BY index` where its planner picks a worse index by itself;
// nothing on PostgreSQL, whose planner has no hints and reads its statistics instead.
inline std::string indexed_by(Dialect d, std::string_view index) {
  if (d != Dialect::sqlite) return "";
  return " INDEXED BY " + std::string(index);
}

}  // namespace trestle::storage::sql
