"""Training throughput: our SFT recipe (TRL's SFTTrainer + PEFT) vs a plain `transformers.Trainer` + PEFT baseline.

Same base model (SmolLM2-135M-Instruct by default, or the tiny random one), same data (the routing task), same
hyper-parameters (LoRA rank/alpha/targets, epochs, batch size, learning rate, seed; our early stopping off, so both
train every step), run back to back in alternating rounds in one process, so a machine that gets busier or quieter
during the run shifts both sides alike. Tokens/s counts the non-padding tokens of the training data fed to the model,
divided by the wall time of the training loop (`Trainer.train()`); set-up (loading, tokenising) and saving are
reported apart. Tokens per CPU-second is the steadier figure on a shared machine.

    python -m bench.training_throughput                      # SmolLM2: 160 examples, 1 epoch, 2 rounds
    python -m bench.training_throughput --model tiny-random --examples 300 --epochs 3 --rounds 3
    python -m bench.training_throughput --threads 1          # on a machine shared with other work

Writes bench/results/training_throughput.json and .md (tiny model: training_throughput_tiny), and prints the table.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench import results_file
from tests.e2e.stack import smollm2_model, tiny_model
from trainer import base_model, demo_tasks, devices
from trainer.config import TrainingConfig
from trainer.recipes import setup, sft
from trainer.result import library_versions


def records(task: str, n: int) -> list[dict]:
    return [
        {"messages": [*e.messages(), {"role": "assistant", "content": e.answer}]}
        for e in demo_tasks.examples(task, n, seed=0)
    ]


def run_ours(config: TrainingConfig, base: Path, data: list[dict], out: Path) -> dict[str, Any]:
    began = time.perf_counter()
    result = sft.train(config, base, data, out)
    return {
        "tokens": result.tokens,
        "train_s": result.duration_s,
        "cpu_s": result.cpu_s,
        "total_s": time.perf_counter() - began,
        "steps": result.steps,
        "mean_loss": result.mean_loss,
    }


def run_baseline(config: TrainingConfig, base: Path, data: list[dict], out: Path) -> dict[str, Any]:
    """What a person writes with transformers and PEFT alone: tokenise, mask the prompt, pad per batch, train."""
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, set_seed

    began = time.perf_counter()
    placement = devices.resolve(config.device)
    set_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=placement.dtype), setup.lora_config(config))

    def tokenize(record: dict) -> dict:
        prompt = tokenizer.apply_chat_template(record["messages"][:-1], add_generation_prompt=True, tokenize=True)
        full = tokenizer.apply_chat_template(record["messages"], tokenize=True)
        prompt, full = _ids(prompt), _ids(full)
        return {"input_ids": full, "labels": [-100] * len(prompt) + full[len(prompt) :]}

    dataset = Dataset.from_list([tokenize(r) for r in data])
    pad = tokenizer.pad_token_id

    def collate(features: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = [f["input_ids"] + [pad] * (width - len(f["input_ids"])) for f in features]
        labels = [f["labels"] + [-100] * (width - len(f["labels"])) for f in features]
        mask = [[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features]
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask)}

    counter = setup.TokenCounter(collate)
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            num_train_epochs=config.epochs,
            max_steps=config.max_steps or -1,
            learning_rate=config.learning_rate,
            lr_scheduler_type="linear",
            per_device_train_batch_size=config.batch_size,
            weight_decay=config.weight_decay,
            seed=config.seed,
            use_cpu=placement.device == "cpu",
            bf16=placement.bf16,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            remove_unused_columns=False,
        )
        trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=counter)
        setup.quiet(trainer)  # no summary line printed, like our recipe
        started, cpu_started = time.perf_counter(), time.process_time()
        output = trainer.train()
        train_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    model.save_pretrained(str(out))
    return {
        "tokens": counter.tokens,
        "train_s": train_s,
        "cpu_s": cpu_s,
        "total_s": time.perf_counter() - began,
        "steps": output.global_step,
        "mean_loss": output.training_loss,
    }


def _ids(tokens: Any) -> list[int]:
    # transformers 5 returns a BatchEncoding from apply_chat_template(tokenize=True); older versions a list.
    return list(tokens["input_ids"] if hasattr(tokens, "keys") else tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=base_model.SMOLLM2, choices=[base_model.SMOLLM2, base_model.TINY])
    parser.add_argument("--examples", type=int, default=160)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--task", default="routing", choices=sorted(demo_tasks.GENERATORS))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    options = parser.parse_args()

    if options.threads:
        torch.set_num_threads(options.threads)
    machine = results_file.machine()
    # The same cached builds as the end-to-end tests.
    base = smollm2_model() if options.model == base_model.SMOLLM2 else tiny_model()
    # Early stopping off: both sides train on every example for every step, so tokens/s compares like with like.
    config = TrainingConfig(epochs=options.epochs, device=options.device, early_stopping_patience=None)
    data = records(options.task, options.examples)
    placement = devices.resolve(options.device)

    runs: dict[str, list[dict]] = {"ours": [], "baseline": []}
    work = Path(tempfile.mkdtemp(prefix="loraflow-bench-"))
    try:
        # A warm-up of each, not counted: first calls pay for imports, kernel selection and page faults.
        warm = config.model_copy(update={"max_steps": 2})
        run_ours(warm, base, data[:32], work / "warm-ours")
        run_baseline(warm, base, data[:32], work / "warm-baseline")
        for round_ in range(options.rounds):
            # Alternate who goes first, so a drift in machine load does not favour one side.
            order = ["ours", "baseline"] if round_ % 2 == 0 else ["baseline", "ours"]
            for name in order:
                run = run_ours if name == "ours" else run_baseline
                figures = run(config, base, data, work / f"{name}-{round_}")
                figures["tokens_per_s"] = figures["tokens"] / figures["train_s"]
                figures["tokens_per_cpu_s"] = figures["tokens"] / figures["cpu_s"]
                runs[name].append(figures)
                print(
                    f"round {round_ + 1} {name:8s} {figures['tokens_per_s']:8.0f} tokens/s "
                    f"{figures['tokens_per_cpu_s']:8.0f} tokens/CPU-s",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    summary = {name: _median(figures) for name, figures in runs.items()}
    ratio = summary["ours"]["tokens_per_s"] / summary["baseline"]["tokens_per_s"]
    # Each round's two runs ran minutes apart at most: their ratio is less exposed to the machine's load drifting.
    paired = statistics.median(
        o["tokens_per_s"] / b["tokens_per_s"] for o, b in zip(runs["ours"], runs["baseline"], strict=True)
    )
    cpu_ratio = summary["ours"]["tokens_per_cpu_s"] / summary["baseline"]["tokens_per_cpu_s"]
    result = {
        "benchmark": "training_throughput",
        "model": options.model,
        "task": options.task,
        "examples": options.examples,
        "rounds": options.rounds,
        "settings": config.model_dump(mode="json"),
        "device": placement.device,
        "dtype": placement.dtype_name,
        "torch_threads": torch.get_num_threads(),
        "machine": machine,
        "versions": library_versions(),
        "runs": runs,
        "median": summary,
        "ratio_ours_over_baseline": ratio,
        "ratio_paired_median": paired,
        "ratio_per_cpu_second": cpu_ratio,
    }
    table = markdown(result)
    results_file.write("training_throughput" + ("_tiny" if options.model == base_model.TINY else ""), result, table)
    print(table)


def _median(figures: list[dict]) -> dict[str, float]:
    return {key: statistics.median(f[key] for f in figures) for key in figures[0]}


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [
        f"Training throughput on {result['model']}, {result['task']} task, {result['examples']} examples x "
        f"{s['epochs']:g} epochs, "
        f"LoRA r={s['rank']} alpha={s['alpha']:g} on {len(s['target_modules'])} projections, batch {s['batch_size']}, "
        f"lr {s['learning_rate']:g}; {result['device']} ({result['dtype']}), {result['torch_threads']} torch "
        f"thread(s); median of {result['rounds']} alternating rounds.",
        "",
        "| trainer | tokens/s | tokens/CPU-s | train loop (s) | CPU (s) | total (s) | steps | tokens | mean loss |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, label in (
        ("ours", "loraflow SFT recipe (TRL SFTTrainer; on CPU: answer-only LM head, shared prompt prefix run once)"),
        ("baseline", "transformers.Trainer + PEFT"),
    ):
        m = result["median"][name]
        lines.append(
            f"| {label} | {m['tokens_per_s']:,.0f} | {m['tokens_per_cpu_s']:,.0f} | {m['train_s']:.2f} | "
            f"{m['cpu_s']:.2f} | {m['total_s']:.2f} | {m['steps']:.0f} | {m['tokens']:,.0f} | {m['mean_loss']:.4f} |"
        )
    lines += [
        "",
        f"Ratio ours / baseline: **{result['ratio_ours_over_baseline']:.2f}** (median tokens/s), "
        f"{result['ratio_paired_median']:.2f} (median of per-round ratios), "
        f"{result['ratio_per_cpu_second']:.2f} (tokens per CPU-second). "
        f"Load average at start: {result['machine']['load_avg_at_start']:.1f}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
