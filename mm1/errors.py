"""Errors the command line reports as a usage problem (exit 2, no traceback), besides ConfigError."""


class CheckpointError(RuntimeError):
    """A checkpoint or run folder that cannot be used as it is: refused (unsafe content), incomplete,
    or already holding another run."""
