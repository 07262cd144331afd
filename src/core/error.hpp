#pragma once
// MatrixError: the one way any layer reports a failure the client should see.
// The HTTP layer turns it into {"errcode": ..., "error": ...} with the status.
#include <boost/json/object.hpp>
#include <stdexcept>
#include <string>

namespace trestle {

// An empty errcode renders `extra` alone (the first 401 of user-interactive authentication).
class MatrixError : public std::runtime_error {
public:
  MatrixError(int status, std::string errcode, std::string message, boost::json::object extra = {})
      : std::runtime_error(message), status_(status), errcode_(std::move(errcode)), extra_(std::move(extra)) {}

  int status() const { return status_; }
  const std::string& errcode() const { return errcode_; }
  const boost::json::object& extra() const { return extra_; }

  // The ones every layer needs; the rest are constructed directly.
  static MatrixError bad_json(const std::string& m) { return {400, "M_BAD_JSON", m}; }
  static MatrixError not_json(const std::string& m) { return {400, "M_NOT_JSON", m}; }
  static MatrixError missing_param(const std::string& m) { return {400, "M_MISSING_PARAM", m}; }
  static MatrixError invalid_param(const std::string& m) { return {400, "M_INVALID_PARAM", m}; }
  static MatrixError forbidden(const std::string& m) { return {403, "M_FORBIDDEN", m}; }
  static MatrixError not_found(const std::string& m) { return {404, "M_NOT_FOUND", m}; }
  static MatrixError unknown(const std::string& m) { return {500, "M_UNKNOWN", m}; }

private:
  int status_;
  std::string errcode_;
  boost::json::object extra_;
};

}  // namespace trestle
