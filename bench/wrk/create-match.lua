-- Creates and matches, as a web page and the contact center's routing send them.
--
--   wrk -t2 -c64 -d5s -s bench/wrk/create-match.lua http://127.0.0.1:PORT -- service 4096 2
--   wrk -t2 -c64 -d5s -s bench/wrk/create-match.lua http://127.0.0.1:PORT -- bare 4096 2
--
-- Each connection posts a create for service load-N in group G; when its answer carries an
-- access number and code, the thread's next request matches them, which releases the
-- number. N walks over the services given (default 4096; each of the threads, the third
-- argument, takes every threads-th one) so that a create does not replace a reservation
-- whose match is still to be sent. `bare` posts the same bodies to /hello
-- (a route that reads the form and answers a small JSON object with an access number and
-- code, so the bodies alternate the same way). A fourth argument, `creates`, sends creates
-- only (each replacing its service's previous reservation, as bench's `load` does), to
-- profile a create. done() prints one line, `wrk-json {...}`, that bench's `wrk` binary
-- and bench/profile read.

local create_path = "/genesys/1/service/request-access"
local match_path = "/genesys/1/service/match-interaction"
local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
local started = {}

function setup(thread)
  thread:set("first", #started)
  table.insert(started, thread)
end

function init(args)
  if args[1] == "bare" then
    create_path, match_path = "/hello", "/hello"
  end
  services = tonumber(args[2] or "4096")
  threads = tonumber(args[3] or "1")
  creates_only = args[4] == "creates"
  step = 0
  creates, matches = 0, 0
  pending = {}
end

function request()
  local body = table.remove(pending)
  if body then
    matches = matches + 1
    return wrk.format("POST", match_path, headers, body)
  end
  local service = (first + step * threads) % services
  step = step + 1
  creates = creates + 1
  return wrk.format("POST", create_path, headers,
    "_id=load-" .. service .. "&_resource_group=G&_provide_code=true")
end

function response(status, _, body)
  if status ~= 200 then
    return
  end
  -- A create's answer names its service; /hello echoes the posted `_id`, empty for a match.
  if not body:match('"_id":"[^"]') then
    return
  end
  local number = body:match('"_access_number":"([^"]+)"')
  local code = body:match('"_access_code":"(%d+)"')
  if number and code and not creates_only then
    table.insert(pending, "_access_number=" .. number:gsub("%+", "%%2B") .. "&_access_code=" .. code)
  end
end

function done(summary, latency, _)
  local e = summary.errors
  local creates, matches = 0, 0
  for _, thread in ipairs(started) do
    creates = creates + thread:get("creates")
    matches = matches + thread:get("matches")
  end
  io.write(string.format(
    'wrk-json {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"max_us":%d,"creates_sent":%d,"matches_sent":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    creates, matches))
end
