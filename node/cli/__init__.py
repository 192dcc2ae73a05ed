"""The mammo-node command line: one package, one settings loader."""

from node.cli.main import main

__all__ = ["main"]
