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


class InvalidArchitecture(NasframeError):
    """An architecture does not belong to the search space."""


class CapabilityError(NasframeError):
    """A strategy needs an evaluator capability (e.g. weight sharing) that the evaluator lacks."""


class SpaceExhausted(NasframeError):
    """A strategy could not propose a new, unseen architecture."""


class RunDirError(NasframeError):
    """A run directory is missing, incomplete, or in use by another process."""


class DataError(NasframeError):
    """A data set cannot be found or read."""


class NotSupported(NasframeError):
    """A space or evaluator does not offer the requested feature."""
