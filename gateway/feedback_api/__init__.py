"""The record's HTTP side: the feedback API (`/v1/feedback`), the admin API over the record (listing, export,
stats, forgetting an end user), the background jobs (retention purge, stats for Prometheus).

    protocol.py      wire types
    auth.py          who may rate: a tenant API key, or a feedback token for one completion
    service.py       rating a just-served completion, forgetting an end user, streaming an export
    router.py        the routes (`router` under /v1, `admin_router` under /admin)
    stats_cache.py   thumbs-up rate per adapter version, refreshed in the background, read at scrape time
    retention.py     purging interactions past their tenant's retention period
    jobs.py          the background jobs the gateway starts for all of the above
"""
