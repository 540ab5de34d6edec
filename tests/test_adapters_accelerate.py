"""``accelerate launch`` with two CPU processes runs examples/accelerate_finetune.py end to end."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("accelerate")
pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "accelerate_finetune.py"
CONFIG = ROOT / "examples" / "accelerate_cpu_2proc.yaml"
GLOO_TEARDOWN = "terminate called without an active exception"
OPTIONS = ["--tiny", "--train-size", "128", "--eval-size", "64", "--epochs", "2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_accelerate_launch_two_cpu_processes(tmp_path: Path) -> None:
    launcher = Path(sys.executable).with_name("accelerate")
    command = [str(launcher), "launch", "--config_file", str(CONFIG)]
    command += ["--main_process_port", str(_free_port()), str(EXAMPLE), *OPTIONS]
    command += ["--output", str(tmp_path)]
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    if run.returncode != 0 and GLOO_TEARDOWN in run.stderr:
        # gloo can abort one rank while both tear the group down (seen 1 in ~5 runs on a loaded
        # 2-core machine, after the work and the final barrier): one retry, same assertions.
        command[command.index("--main_process_port") + 1] = str(_free_port())
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["steps"] == 2 * 128 // (16 * 2)  # each process sees half of every epoch
    assert summary["last_loss"] < summary["first_loss"]

    import accelerate_finetune as example  # examples/ is on pytest's pythonpath

    from tcur.adapters import load

    args = example.parse_args([*OPTIONS, "--output", str(tmp_path)])
    model, _, validation = example.tiny_model_and_data(args)
    load(model, tmp_path / "adapter").eval()
    ids, mask, labels = validation.tensors
    with torch.no_grad():
        predictions = model(input_ids=ids, attention_mask=mask).logits.argmax(dim=-1)
    restored = float((predictions == labels).double().mean())
    assert abs(restored - summary["accuracy_after"]) <= 1 / len(labels)
    assert summary["accuracy_after"] > summary["accuracy_before"]
