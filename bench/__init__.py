"""The benchmarks behind ``llmsight bench NAME``: each runs its baseline in the same run.

They import the rooms they measure (the SDK, the collector, the signals, the store's shared reads);
only the CLI imports them.
"""
