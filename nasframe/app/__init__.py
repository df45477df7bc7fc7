"""Layer 7: the command line and the Python API, the only place that knows about argparse."""
