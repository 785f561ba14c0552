-- wrk script: the tutorial request with the API key from the environment.
wrk.method = "POST"
wrk.path = "/v1/predict"
wrk.body = '{"area": 120, "rooms": 2, "bathrooms": 1, "location": 1}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("PREDGATE_BENCH_KEY")
