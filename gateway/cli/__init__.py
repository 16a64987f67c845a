"""The `loraflow` command (typer + rich)."""
