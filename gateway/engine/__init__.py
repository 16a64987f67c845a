"""The vLLM engines behind the gateway: their management routes, a supervised child process, and the pool."""
