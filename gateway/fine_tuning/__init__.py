"""OpenAI's fine-tuning API, tenant-scoped: `/v1/files` and `/v1/fine_tuning/jobs`, and the admin routes through which
the trainer claims, runs and finishes jobs (the trainer itself lives in trainer/ and reaches these over HTTP)."""
