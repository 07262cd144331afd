#pragma once
// What the processes of one deployment keep in step through service/cluster's messages: token
// revocations (each process caches token owners), typing and presence (in memory, owned by the
// main process, mirrored by workers).
namespace trestle::service {

struct Homeserver;

// Registers the handlers and hooks; before Cluster::start(). Nothing happens with one process.
void share_state_across_processes(Homeserver& hs);

}  // namespace trestle::service
