-- wrk script: PUT /_matrix/client/v3/rooms/{roomId}/send/m.room.message/{txnId} with a fresh
-- transaction id per request (a repeated id would be answered from the idempotency table and
-- measure nothing). Each wrk thread is one user: thread i sends with token i (mod the list), over
-- that thread's own keep-alive connections.
--
-- Environment (set by trestle_bench.py):
--   BENCH_TOKENS  comma-separated access tokens, one per user
--   BENCH_ROOM    the room id, already percent-encoded
--   BENCH_RUN     a string unique to this run, so txn ids never repeat across runs
-- done() prints one line "BENCH_JSON {...}" with the totals (latencies in microseconds).

local tokens = {}
for t in string.gmatch(os.getenv("BENCH_TOKENS") or "", "[^,]+") do
  tokens[#tokens + 1] = t
end
local room = os.getenv("BENCH_ROOM") or ""
local run = os.getenv("BENCH_RUN") or tostring(os.time())
if #tokens == 0 or room == "" then
  io.stderr:write("send.lua: BENCH_TOKENS and BENCH_ROOM must be set\n")
  os.exit(2)
end

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("thread_id", next_id)
  thread:set("token", tokens[(next_id % #tokens) + 1])
  thread:set("room", room)
  thread:set("run", run)
  threads[#threads + 1] = thread
  next_id = next_id + 1
end

function init(args)
  n = 0
  ok2xx = 0
  non2xx = 0
  last_bad_status = 0
  last_bad_body = ""
  prefix = "/_matrix/client/v3/rooms/" .. room .. "/send/m.room.message/" .. run .. "-t" .. thread_id .. "-"
  headers = {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }
end

function request()
  n = n + 1
  local body = '{"msgtype":"m.text","body":"wrk message ' .. n .. ' from thread ' .. thread_id .. '"}'
  return wrk.format("PUT", prefix .. n, headers, body)
end

function response(status, hdrs, body)
  if status >= 200 and status < 300 then
    ok2xx = ok2xx + 1
  else
    non2xx = non2xx + 1
    last_bad_status = status
    last_bad_body = string.sub(body or "", 1, 200)
  end
end

local function json_string(s)
  s = string.gsub(s, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end)
  return '"' .. s .. '"'
end

function done(summary, latency, requests)
  local ok, bad, bad_status, bad_body = 0, 0, 0, ""
  for _, t in ipairs(threads) do
    ok = ok + (t:get("ok2xx") or 0)
    bad = bad + (t:get("non2xx") or 0)
    local s = t:get("last_bad_status") or 0
    if s ~= 0 then
      bad_status = s
      bad_body = t:get("last_bad_body") or ""
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"ok_2xx":%d,"non_2xx":%d,"last_bad_status":%d,' ..
    '"last_bad_body":%s,"err_connect":%d,"err_read":%d,"err_write":%d,"err_timeout":%d,' ..
    '"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d,"lat_mean_us":%.1f}\n',
    summary.requests, summary.duration, ok, bad, bad_status, json_string(bad_body),
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
