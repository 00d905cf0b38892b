"""The segcheck command: the seed's test.py workflow, report, merge, plan and fetch (the only network code)."""
