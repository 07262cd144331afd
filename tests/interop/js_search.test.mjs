// Interop: matrix-js-sdk's server-side search against the real Trestle binary. The SDK's
// searchRoomEvents (order_by recent, event_context with profiles, as Element calls it) and
// backPaginateRoomEventsSearch paging through next_batch until the results run out; and
// client.search with order_by rank, paged by hand.
//
//   cd tests/interop && TRESTLE_BINARY=$PWD/../../build/trestle node --test --test-force-exit js_search.test.mjs

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { startRelaxedTrestle, stopTrestle, tail } from "./trestle_process.mjs";
import { createClient } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BINARY = path.resolve(process.env.TRESTLE_BINARY ?? path.join(HERE, "../../build/trestle"));
const STEP_TIMEOUT_MS = 20_000;

logger.setLevel("silent");

let server;

before(async () => {
  await startRelaxedTrestle({ binary: BINARY, prefix: "trestle-interop-search-", timeoutMs: STEP_TIMEOUT_MS,
                              hold: (s) => { server = s; } });
});

after(async () => {
  if (server) await stopTrestle(server);
});

async function register(username) {
  const c = createClient({ baseUrl: server.baseUrl });
  let session;
  try {
    await c.registerRequest({ username, password: "interop-pass-1" });
  } catch (err) {
    assert.equal(err.httpStatus, 401, `register without auth: ${err}`);
    session = err.data.session;
  }
  const res = await c.registerRequest({ username, password: "interop-pass-1",
                                        auth: { type: "m.login.dummy", session } });
  return createClient({ baseUrl: server.baseUrl, userId: res.user_id, accessToken: res.access_token,
                        deviceId: res.device_id });
}

test("searchRoomEvents and backPaginateRoomEventsSearch page through every match", { timeout: 120_000 }, async (t) => {
  try {
    const alice = await register("searcher");
    const { room_id: roomId } = await alice.createRoom({ name: "Search room" });
    await alice.setDisplayName("Alice Searcher");
    const sent = [];
    for (let i = 0; i < 23; i++) {
      const body = i % 2 === 0 ? `needle number ${i}` : `haystack straw ${i}`;
      const { event_id } = await alice.sendMessage(roomId, { msgtype: "m.text", body });
      if (i % 2 === 0) sent.push(event_id);
    }
    // 12 needles, newest first, in pages of the default 10.
    const results = await alice.searchRoomEvents({ term: "needle" });
    assert.equal(results.count, 12);
    assert.equal(results.results.length, 10);
    assert.ok(results.highlights.includes("needle"), `highlights: ${JSON.stringify(results.highlights)}`);
    assert.equal(typeof results.next_batch, "string");
    const first = results.results[0].context;
    assert.equal(first.getEvent().getId(), sent[sent.length - 1]);
    assert.equal(first.getEvent().getContent().body, "needle number 22");
    assert.equal(first.getEvent().getRoomId(), roomId);
    // event_context before_limit 1: the haystack message before it.
    assert.equal(first.getTimeline().length, 2, "the match and one event of context before it");
    assert.match(first.getTimeline()[0].getContent().body, /^haystack straw 21$/);

    await alice.backPaginateRoomEventsSearch(results);
    assert.equal(results.results.length, 12);
    assert.equal(results.next_batch, undefined, "no next_batch after the last page");
    await assert.rejects(alice.backPaginateRoomEventsSearch(results), /Cannot backpaginate/);
    const ids = results.results.map((r) => r.context.getEvent().getId());
    assert.deepEqual(ids, [...sent].reverse(), "every needle once, newest first");
  } catch (err) {
    if (server) t.diagnostic(tail(server.logPath));
    throw err;
  }
});

test("client.search with order_by rank pages by next_batch", { timeout: 60_000 }, async (t) => {
  try {
    const bob = await register("ranker");
    const { room_id: roomId } = await bob.createRoom({});
    await bob.sendMessage(roomId, { msgtype: "m.text", body: "kiwi" });
    await bob.sendMessage(roomId, { msgtype: "m.text", body: "kiwi kiwi kiwi kiwi banana" });
    await bob.sendMessage(roomId, { msgtype: "m.text", body: "a kiwi among many other words in a long sentence here" });
    const body = { search_categories: { room_events: { search_term: "kiwi", order_by: "rank", filter: { limit: 2 } } } };
    const page1 = (await bob.search({ body })).search_categories.room_events;
    assert.equal(page1.count, 3);
    assert.equal(page1.results.length, 2);
    assert.ok(page1.results[0].rank >= page1.results[1].rank, "best match first");
    assert.equal(page1.results[0].result.content.body, "kiwi kiwi kiwi kiwi banana");
    const page2 = (await bob.search({ body, next_batch: page1.next_batch })).search_categories.room_events;
    assert.equal(page2.results.length, 1);
    assert.equal(page2.next_batch, undefined);
    const all = [...page1.results, ...page2.results].map((r) => r.result.event_id);
    assert.equal(new Set(all).size, 3);
    await assert.rejects(bob.search({ body, next_batch: "garbage" }), (err) => err.httpStatus === 400);
  } catch (err) {
    if (server) t.diagnostic(tail(server.logPath));
    throw err;
  }
});
