"""The ``nnsqueeze`` command line: a thin layer over the public API."""

from nnsqueeze.cli.main import main

__all__ = ["main"]
