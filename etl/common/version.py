"""The package's version, written once: pyproject.toml reads it from here (hatch's
dynamic version); ``--version`` and the User-Agent import it."""

VERSION = "0.1.0"
