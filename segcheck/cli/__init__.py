"""The segcheck command: the seed's workflow, report, merge, compare, plan, isa-bench, peer and fetch (the network code)."""
