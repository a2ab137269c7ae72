"""Task definitions of the peer queues, imported by their own worker processes.

Every peer runs the same no-op job: record its completion in Redis (a hash of job id
to completion time, and a hash of job id to how many times it completed), from which
the benchmark counts completions, losses and duplicates.
"""
