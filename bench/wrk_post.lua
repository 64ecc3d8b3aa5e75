-- wrk script for bench/load.py: POST the file named by WRK_BODY_FILE, print a JSON summary at the end.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
local file = assert(io.open(os.getenv("WRK_BODY_FILE"), "rb"))
wrk.body = file:read("*a")
file:close()

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, ' ..
    '"latency_us": {"p50": %d, "p95": %d, "p99": %d}}\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
