-- wrk script of the HTTP benchmarks (bench/wrk.py): each request takes the next line of the
-- file WRK_ITEMS, a path to GET or, with WRK_METHOD=POST, a JSON body to POST to the URL's
-- path; at the end, one line "WRK_JSON {...}" with the counts and the latency percentiles
-- (wrk's own --latency output has no p95).
local method = os.getenv("WRK_METHOD") or "GET"
local items = {}
for line in io.lines(os.getenv("WRK_ITEMS")) do
  if #line > 0 then items[#items + 1] = line end
end
local i = 0

request = function()
  i = i % #items + 1
  if method == "POST" then
    return wrk.format("POST", wrk.path, {["Content-Type"] = "application/json"}, items[i])
  end
  return wrk.format("GET", items[i])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "non_2xx_3xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
