"""Layer 4: running a search: configuration, the run folder, the runner and its loop, executing
requests, evaluation pools (local, Ray) and constraints.
"""
