"""Exception types. Every user-facing failure derives from NasframeError.

The CLI turns a NasframeError into one line on stderr and exit code 2; anything else is a bug
and keeps its traceback.
"""


class NasframeError(Exception):
    """Base class for errors caused by user input or environment, not by nasframe bugs."""


class ConfigError(NasframeError):
    """A configuration key, type or value is wrong."""


class RegistryError(NasframeError):
    """An unknown or duplicate component name."""


class PluginLoadError(NasframeError):
    """A user plugin (module, file or entry point) failed to import."""


class PluginError(NasframeError):
    """A component (strategy, space, evaluator, data set) raised inside one of its methods, or gave back
    something its interface does not allow (a Result with a NaN metric, a state that cannot be saved).

    The message names the component, the method and the problem; the exception it replaced, if any, is
    its `__cause__` (`--debug` shows its traceback)."""


class InvalidArchitecture(NasframeError):
    """An architecture does not belong to the search space."""


class CapabilityError(NasframeError):
    """A strategy needs an evaluator capability (e.g. weight sharing) that the evaluator lacks."""


class SpaceExhausted(NasframeError):
    """A strategy could not propose a new, unseen architecture."""


class RunDirError(NasframeError):
    """A run directory is missing, incomplete, or in use by another process."""


class FolderError(RunDirError):
    """An output folder holds something that is not the command's own: another kind of nasframe
    folder, another run, or files nasframe did not write."""


class DataError(NasframeError):
    """A data set cannot be found or read."""


class NotSupported(NasframeError):
    """A space or evaluator does not offer the requested feature."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interrupt so a run stops as after Ctrl-C: the last consistent state
    checkpointed, one line saying how to continue (exit code 143 rather than 130)."""
