"""Results: a run's typed records, the Performance table and chart, and merging shards."""
