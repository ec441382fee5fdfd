-- wrk reporting hook for bench/run: prints one machine-readable line after the human summary.
-- Latencies are in microseconds, as wrk records them (its histogram, not a sample).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d," ..
    "\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d,\"p999_us\":%d,\"max_us\":%d,\"mean_us\":%.1f," ..
    "\"connect_errors\":%d,\"read_errors\":%d,\"write_errors\":%d,\"non2xx\":%d,\"timeouts\":%d}\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
