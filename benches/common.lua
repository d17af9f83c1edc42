-- Shared by the wrk scripts: one machine-readable RESULT line at the end of a run.
-- Latencies are wrk's (microseconds), printed in milliseconds.
local M = {}

function M.done(label)
  return function(summary, latency, requests)
    local secs = summary.duration / 1e6
    local e = summary.errors
    io.write(string.format(
      "RESULT label=%s requests=%d duration_s=%.2f rps=%.1f p50_ms=%.3f p90_ms=%.3f " ..
      "p99_ms=%.3f p999_ms=%.3f max_ms=%.3f non2xx=%d socket_errors=%d\n",
      label, summary.requests, secs, summary.requests / secs,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000,
      latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, latency.max / 1000,
      e.status, e.connect + e.read + e.write + e.timeout))
  end
end

return M
