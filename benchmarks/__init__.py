"""The benchmark harness of omniq: ``python -m benchmarks`` (measurement only).

It measures enqueue, enqueue-many, drain, end-to-end throughput, idle wake-up
latency, claim cost against the backlog and memory, per backend and twin, and
the same workloads on Huey (when installed) in the same process, then prints a
table with ratios to Huey, writes a JSON file and a chart. See
``docs/performance.md`` for the method and the latest figures. Benchmarks are not
tests: nothing here asserts a time.
"""
