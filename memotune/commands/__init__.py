"""The ``memotune`` subcommands, one module each; every module has ``register``."""
