#pragma once
// Trestle's version, as GET /_synapse/admin/v1/server_version gives it (synadm version).

namespace trestle::core {

inline constexpr const char* kServerVersion = "0.11.0";

}  // namespace trestle::core
