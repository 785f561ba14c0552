-- wrk script for the benchmarks: POST the tutorial row (or BENCH_BODY) as JSON, with the
-- Authorization header taken from BENCH_AUTHORIZATION when set (the bare baselines take none).
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or '{"area": 120, "rooms": 2, "bathrooms": 1, "location": 1}'
wrk.headers["Content-Type"] = "application/json"
local authorization = os.getenv("BENCH_AUTHORIZATION")
if authorization and authorization ~= "" then
  wrk.headers["Authorization"] = authorization
end
