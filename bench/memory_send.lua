-- wrk script for memory_bench.py: like send.lua (one user per wrk thread, fresh txn ids), with the
-- body's size set by BENCH_BODY_BYTES (default: a short message), so the same load can be run with
-- small and with 60 KB events.
--
-- Environment: BENCH_TOKENS, BENCH_ROOM, BENCH_RUN as for send.lua; BENCH_BODY_BYTES.
-- done() prints "BENCH_JSON {"requests":N,"non_2xx":N,"duration_us":N}".

local tokens = {}
for t in string.gmatch(os.getenv("BENCH_TOKENS") or "", "[^,]+") do
  tokens[#tokens + 1] = t
end
local room = os.getenv("BENCH_ROOM") or ""
local run = os.getenv("BENCH_RUN") or tostring(os.time())
local body_bytes = tonumber(os.getenv("BENCH_BODY_BYTES") or "0") or 0
if #tokens == 0 or room == "" then
  io.stderr:write("memory_send.lua: BENCH_TOKENS and BENCH_ROOM must be set\n")
  os.exit(2)
end

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("thread_id", next_id)
  thread:set("token", tokens[(next_id % #tokens) + 1])
  thread:set("room", room)
  thread:set("run", run)
  thread:set("body_bytes", body_bytes)
  threads[#threads + 1] = thread
  next_id = next_id + 1
end

function init(args)
  n = 0
  ok2xx = 0
  non2xx = 0
  filler = string.rep("x", math.max(0, body_bytes - 80))
  prefix = "/_matrix/client/v3/rooms/" .. room .. "/send/m.room.message/" .. run .. "-t" .. thread_id .. "-"
  headers = {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }
end

function request()
  n = n + 1
  local body = '{"msgtype":"m.text","body":"memory bench ' .. n .. ' from thread ' .. thread_id .. ' ' .. filler .. '"}'
  return wrk.format("PUT", prefix .. n, headers, body)
end

function response(status, hdrs, body)
  if status >= 200 and status < 300 then
    ok2xx = ok2xx + 1
  else
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do
    bad = bad + (t:get("non2xx") or 0)
  end
  io.write(string.format('BENCH_JSON {"requests":%d,"non_2xx":%d,"duration_us":%d}\n',
    summary.requests, bad, summary.duration))
end
