"""What the trainer needs from the gateway, over HTTP: training runs (which are also the per-tenant lock) and
golden sets. The trainer itself lives in trainer/ and never shares code with the gateway (DESIGN.md)."""
