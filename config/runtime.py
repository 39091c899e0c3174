"""Process-wide tuning, applied when the `config` package loads: web, workers, commands."""

import gc

# CPython collects its youngest generation every 700 allocations; an export allocates a few
# dozen objects a row, so the collector ran every few rows and walked the rows still held:
# about a third of a JSONL export's CPU time and half of a Parquet export's. Request and
# task code makes few reference cycles, so collecting less often holds little more memory.
GC_THRESHOLDS = (50_000, 20, 20)


def tune_garbage_collector() -> None:
    gc.set_threshold(*GC_THRESHOLDS)
