"""newsclf's benchmark harness: `python -m benchmarks --help`.

One row sampler (`rows`), one registry of engines (`engines`), one runner (`runner`: a process
per engine, warm-up outside the timing, interleaved rounds, medians and ratios) and one results
writer (`results`). The suites in `__main__` (classify, train, scale) all go through them.
"""
