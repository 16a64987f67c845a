"""Builds datasets from the record, trains LoRA adapters, evaluates them through the gateway, asks it to promote.

Reaches the gateway only over HTTP, so it can run on another machine (DESIGN.md).

    settings.py         TrainerSettings: gateway URL, admin key, database, var dir (LORAFLOW_*)
    tenant_settings.py  what a tenant's settings say: training, schedule, evaluation, min_new_ratings
    gateway_client.py   the admin API and the OpenAI API, as the trainer uses them
    rated_interactions.py  rated interactions of an adapter alias, read from feedback/'s tables
    dataset.py          the rules: SFT/KTO examples, dedupe, held-out split by id hash, no leak, golden set
    cycle.py            one run: lock, the stages in order, the ending (failed: retire the candidate), report
    stages.py           the stages, each handed what the one before produced: prepare, dataset, train, register,
                        stage, evaluate, decide (promote or retire)
    run_status.py       the run's stage, progress and heartbeat at the gateway
    evaluation.py       candidate and incumbent answering the same items through the gateway, scored
    adapters.py         packing adapters for upload; keeping promoted ones to continue them
    scheduler.py        APScheduler cron jobs per tenant and alias, synced from tenant settings
    watcher.py          a run's progress on the terminal
    cli.py              `loraflow train|scheduler|demo|demo-model`
    demo.py             `loraflow demo`; demo_users.py: simulated users and the oracle

    config.py, recipes/ (sft, kto), progress.py, result.py, examples.py, devices.py: training
    scorers.py, judge.py, gate.py, report.py: evaluation, the promotion gate, the run report
"""
