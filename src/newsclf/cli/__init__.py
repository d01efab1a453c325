"""The command line: `newsclf train | tune | soup | export | classify`."""

from newsclf.cli.app import app, main

__all__ = ["app", "main"]
