"""The OpenAI-compatible gateway: tenants and keys, the adapter registry, engine supervision, the APIs."""
