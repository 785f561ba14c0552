"""Rate limiting: policies, one-step counters (Redis or process memory), store-failure modes
and response headers. Plain Python: the gateway calls it with plain values."""
