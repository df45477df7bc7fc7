"""nasframe's version, in one place (run.json and `nasframe --version` read it)."""

__version__ = "0.2.0"
