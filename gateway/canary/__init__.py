"""Canaries: a candidate version serves a sticky share of its alias's users, and an always-valid sequential test on
their 👍 rates promotes it or sends it back (issue #14).

    sequential.py   the test: mixture likelihood ratios against a composite null, on four counts (pure)
    decision.py     what the evidence and the budget decide, by the canary's policy (pure)
    split.py        which arm serves a user: a hash of (canary id, end user or key)
    store.py        canaries in the database, the guarded claim, the counts per arm from the record
    loop.py         the decision loop every replica runs, and what /metrics shows per arm
    protocol.py     wire types of the admin API
    router.py       the admin routes: start, look, list, stop
"""
