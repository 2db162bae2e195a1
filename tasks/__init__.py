"""Prefect tasks the flows are made of, with retries where retrying is safe (the request store and DVC
keep what finished). Thin: the logic is in agorabench/."""
