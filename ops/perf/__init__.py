"""`armed-ops perf`: load generator, measurement scenarios and reports (perf.json, perf.md, capacity.json)."""
