"""The OpenAI-compatible API: chat and text completions, models. Wire types, the service, the router."""
