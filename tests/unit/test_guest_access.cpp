// The guest endpoint list (spec: guest access module): matched on the route's path template.
#include "service/guest_access.hpp"

#include <gtest/gtest.h>

using trestle::service::guest_may_call;

TEST(GuestAccess, SpecEndpointsAreAllowedUnderBothPrefixes) {
  EXPECT_TRUE(guest_may_call("GET", "/_matrix/client/v3/sync"));
  EXPECT_TRUE(guest_may_call("GET", "/_matrix/client/r0/sync"));
  EXPECT_TRUE(guest_may_call("HEAD", "/_matrix/client/v3/rooms/{}/messages"));
  EXPECT_TRUE(guest_may_call("PUT", "/_matrix/client/v3/rooms/{}/send/{}/{}"));
  EXPECT_TRUE(guest_may_call("PUT", "/_matrix/client/v3/rooms/{}/state/{}/{}"));
  EXPECT_TRUE(guest_may_call("POST", "/_matrix/client/v3/join/{}"));
  EXPECT_TRUE(guest_may_call("PUT", "/_matrix/client/v3/profile/{}/displayname"));
  EXPECT_TRUE(guest_may_call("GET", "/_matrix/client/v3/account/whoami"));
  EXPECT_TRUE(guest_may_call("GET", "/_matrix/client/v1/media/download/{}/{}"));
}

TEST(GuestAccess, EverythingElseIsRefused) {
  EXPECT_FALSE(guest_may_call("POST", "/_matrix/client/v3/createRoom"));
  EXPECT_FALSE(guest_may_call("PUT", "/_matrix/client/v3/profile/{}/avatar_url"));
  EXPECT_FALSE(guest_may_call("POST", "/_matrix/client/v3/rooms/{}/invite"));
  EXPECT_FALSE(guest_may_call("DELETE", "/_matrix/client/v3/devices/{}"));
  EXPECT_FALSE(guest_may_call("GET", "/_matrix/client/v3/joined_rooms"));
  // Only the client API's own prefixes, and the method counts.
  EXPECT_FALSE(guest_may_call("GET", "/_matrix/media/v3/config"));
  EXPECT_FALSE(guest_may_call("POST", "/_matrix/client/v3/sync"));
  EXPECT_FALSE(guest_may_call("GET", "/_matrix/client/v3sync"));
  EXPECT_FALSE(guest_may_call("", ""));  // no route matched (pre-authentication of uploads)
}
