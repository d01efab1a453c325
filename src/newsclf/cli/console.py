"""The one console every command prints to (stderr: stdout may carry predictions)."""

from rich.console import Console

console = Console(stderr=True)
