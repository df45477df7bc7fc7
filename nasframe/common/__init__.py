"""Layer 1: what every other layer uses and that knows nothing of NAS.

Errors, options dataclasses, bounded loading of user files, atomic checkpoints and locks, CPU
threads, progress bars, parameter/MAC counting, device choice, torchrun process groups, the
plugin registry machinery and the version. Imports nothing else of nasframe.
"""
