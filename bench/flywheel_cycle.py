"""Wall time of one full flywheel cycle (dataset → train → evaluate → promote) for 1,000 rated interactions.

    python -m bench.flywheel_cycle [--interactions 1000] [--tasks routing,extraction] [--golden 20]
                                   [--model smollm2-135m-instruct | tiny-random] [--cpu-threads 1] [--engine-cores 0-1]

One vLLM engine (CPU; every core by default, as the demo runs it: set-up, training and evaluation take turns, and an
idle engine leaves its cores to training) on the base model (SmolLM2-135M-Instruct by default) and one gateway
process in front of it (recording). Per task, a tenant whose alias the base model serves; simulated users send the
interactions through the gateway with the `openai` client and an oracle rates each reply (set-up, not part of the
cycle). Then one cycle runs, as the schedule runs it, with the tenant settings the demo uses, and its stages are
timed (the run report's timings). Writes bench/results/flywheel_cycle.{json,md} (tiny model: flywheel_cycle_tiny).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bench import results_file
from tests.e2e.stack import ADMIN_KEY, BASE_NAME, GatewayProcess, smollm2_model, start_engine, tiny_model
from trainer import demo_tasks, demo_users
from trainer.base_model import SMOLLM2
from trainer.cycle import Cycle
from trainer.gateway_client import GatewayClient
from trainer.settings import TrainerSettings

ALIAS = "assistant"
TASKS = {  # the demo's settings for each task (trainer/demo.py): the defaults learn both on SmolLM2
    "routing": {"scorer": "exact", "max_tokens": 4, "training": {}},
    "extraction": {"scorer": "json_equal", "max_tokens": 32, "training": {}},
}
# The random tiny model learns the 19 answer tokens of extraction only with more epochs, faster (measured).
TINY_TRAINING = {"extraction": {"epochs": 8, "learning_rate": 2e-3}}
USERS_CONCURRENCY = 16


def set_up(
    gateway: GatewayProcess, task: str, interactions: int, golden: int, training: dict[str, Any]
) -> tuple[dict[str, Any], float]:
    """The task's tenant, its alias (the base model serves it), a golden set; then users send and rate."""
    spec, tenant = TASKS[task], f"bench-{task}"
    settings = {
        "training": training,
        "evaluation": {"scorer": spec["scorer"], "max_tokens": spec["max_tokens"], "concurrency": 16},
    }
    with GatewayClient(gateway.url, ADMIN_KEY) as admin:
        admin.create_tenant(tenant, settings)
        admin.create_adapter(tenant, ALIAS)
        if golden:
            lines = [json.dumps({"input": e.prompt, "expected": e.answer, "scorer": spec["scorer"]})
                     for e in demo_tasks.examples(task, golden, seed=99)]  # fmt: skip
            admin.put_golden(tenant, ALIAS, ("\n".join(lines) + "\n").encode())
        client = admin.openai(admin.create_key(tenant, "bench users")[1])
    started = time.perf_counter()
    examples = demo_tasks.examples(task, interactions, seed=1)
    served = demo_users.send(
        client, examples, model=ALIAS, max_tokens=spec["max_tokens"], concurrency=USERS_CONCURRENCY
    )
    ratings = demo_users.rate(client, served, concurrency=USERS_CONCURRENCY)
    client.close()
    return {"ratings": ratings, "accuracy_before": demo_users.accuracy(served)}, time.perf_counter() - started


def one_cycle(gateway: GatewayProcess, settings: TrainerSettings, task: str) -> tuple[dict[str, Any], float]:
    with GatewayClient(gateway.url, ADMIN_KEY) as client:
        cycle = Cycle(settings, client)
        started = time.perf_counter()
        outcome = cycle.run(f"bench-{task}", ALIAS, trigger="schedule")
        wall = time.perf_counter() - started
        cycle.close()
    assert outcome.report is not None, outcome.reason
    return outcome.report.model_dump(mode="json", exclude={"samples"}), wall


def markdown(data: dict[str, Any]) -> str:
    text = f"# One flywheel cycle: {data['model']}\n\n"
    text += f"{json.dumps(data['machine'])}\n\n"
    text += (
        f"{data['interactions']} rated interactions per task, {data['golden']} golden items; {data['model']} on CPU, "
        f"vLLM on cores {data['engine_cores']}, training on {data['cpu_threads']} torch thread(s). The cycle: dataset "
        "from the "
        "record, training, registration and staging, evaluation of candidate and base model through the gateway, "
        "gate, promotion.\n\n"
    )
    stages = list(dict.fromkeys(stage for run in data["runs"].values() for stage in run["report"]["timings"]))
    rows = [[stage, *[f"{run['report']['timings'].get(stage, 0):.1f}" for run in data["runs"].values()]]
            for stage in stages]  # fmt: skip
    rows.append(["**cycle wall time**", *[f"**{run['cycle_wall_s']:.1f}**" for run in data["runs"].values()]])
    text += results_file.table(["stage (s)", *data["runs"]], rows)
    text += "\n"
    rows = []
    for task, run in data["runs"].items():
        report = run["report"]
        held = next((row for row in report["scores"] if row["split"] == "held_out"), {})
        counts, training = report["data"], report["training"] or {}
        ratings = run["setup"]["ratings"]
        rows.append([task, f"{ratings['up']} / {ratings['down']}", counts["train"], counts["held_out"],
                     counts["golden"], training.get("steps"), f"{training.get('tokens_per_s', 0):.0f}",
                     f"{held.get('incumbent', 0):.2f} → {held.get('candidate', 0):.2f}", report["status"],
                     f"{run['setup_s']:.0f}"])  # fmt: skip
    text += results_file.table(
        ["task", "👍 / 👎", "train", "held-out", "golden", "steps", "tokens/s", "held-out score", "decision",
         "set-up s (not in the cycle)"], rows,
    )  # fmt: skip
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interactions", type=int, default=1000)
    parser.add_argument("--tasks", default="routing,extraction")
    parser.add_argument("--golden", type=int, default=20)
    parser.add_argument("--model", default=SMOLLM2, choices=[SMOLLM2, BASE_NAME])
    parser.add_argument("--cpu-threads", type=int, default=1, help="torch threads while training (the tenant setting)")
    parser.add_argument("--engine-cores", default="0-1", help="VLLM_CPU_OMP_THREADS_BIND of the engine")
    args = parser.parse_args()
    tasks = args.tasks.split(",")

    model = smollm2_model() if args.model == SMOLLM2 else tiny_model()
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="loraflow-bench-") as tmp:
        work = Path(tmp)
        engine, engine_url = start_engine(model, work, threads_bind=args.engine_cores, served_name=args.model)
        gateway = None
        try:
            gateway = GatewayProcess(
                [engine_url], work / "gateway", model, LORAFLOW_TRAINING__RUN_SCHEDULER="false",
                LORAFLOW_SERVED_MODEL_NAME=args.model,
            )  # fmt: skip
            settings = TrainerSettings(
                gateway_url=gateway.url, admin_key=SecretStr(ADMIN_KEY),
                database_url=f"sqlite:///{work / 'gateway' / 'var' / 'loraflow.db'}", var_dir=work / "trainer",
                base_model=str(model),
            )  # fmt: skip
            for task in tasks:
                print(f"{task}: {args.interactions} interactions through {gateway.url}…", flush=True)
                training = {"cpu_threads": args.cpu_threads, **TASKS[task]["training"]}
                if args.model == BASE_NAME:
                    training.update(TINY_TRAINING.get(task, {}))
                setup, setup_s = set_up(gateway, task, args.interactions, args.golden, training)
                print(f"{task}: one cycle…", flush=True)
                report, wall = one_cycle(gateway, settings, task)
                runs[task] = {"setup": setup, "setup_s": setup_s, "cycle_wall_s": wall, "report": report}
                print(f"{task}: {report['status']} in {wall:.1f} s", flush=True)
        finally:
            if gateway is not None:
                gateway.stop()
            engine.stop()
    data = {
        "machine": results_file.machine(),
        "model": args.model,
        "cpu_threads": args.cpu_threads,
        "engine_cores": args.engine_cores,
        "interactions": args.interactions,
        "golden": args.golden,
        "runs": runs,
    }
    text = markdown(data)
    json_path, _ = results_file.write("flywheel_cycle" + ("_tiny" if args.model == BASE_NAME else ""), data, text)
    print(text)
    print(f"written to {json_path}")


if __name__ == "__main__":
    main()
