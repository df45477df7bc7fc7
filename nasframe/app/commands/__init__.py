"""The commands of the `nasframe` command line, one module each (see `nasframe.app.cli`)."""
