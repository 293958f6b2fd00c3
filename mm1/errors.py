"""Errors the command line reports as a usage problem (exit 2, no traceback). Nothing here imports
anything, so every module (model code included) can raise them."""


class ConfigError(ValueError):
    """A user mistake in a recipe or an override; the message names the key path."""



class CheckpointError(RuntimeError):
    """A checkpoint or run folder that cannot be used as it is: refused (unsafe content), incomplete,
    or already holding another run."""
