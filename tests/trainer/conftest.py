"""Fixtures for the trainer's tests: the tiny base model (built once, cached under var/) and demo-task records."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.e2e import stack


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    # 2 cores shared with other suites: with 2 torch threads, each matmul waits for a preempted partner thread,
    # and training ran 7x slower than with 1 when the machine was busy.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def base_model() -> Path:
    return stack.tiny_model()  # the same cached build as the end-to-end suite
