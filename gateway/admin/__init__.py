"""The admin API under /admin (admin key): tenants, keys, adapters and their lifecycle."""
