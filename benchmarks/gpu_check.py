"""One plain script for a lent GPU machine: correctness and timings of tcur on CUDA, JSON out.

It runs with whatever Python and torch the machine already has: nothing is installed and no
model package is loaded (tcur itself needs NumPy, SciPy and array-api-compat; a missing one is
recorded in the JSON instead of a traceback). Every section has a time budget, so the whole
script stays within about 5 minutes:

1. correctness on the device, float64 and float32: ``cur``/``tcur``/``decompose`` return tensors
   on the input's device whose ``reconstruct()`` error is within a bound of the CPU result's, on
   a random low-rank matrix and a Hilbert matrix; ``tprod``/``tsvd`` identities;
2. host round trips of ``decompose`` (conversions to NumPy counted by patching ``to_numpy``);
3. timings (``torch.cuda.synchronize`` around each, median of repeats): ``tprod`` against its
   floor (one ``rfft`` per operand + the Fourier-slice GEMMs + one ``irfft``) on the shapes of
   ``bench_tprod``; ``decompose(A, 50)`` on 4000 x 3000 against one pass (``A @ Omega``); t-CUR
   against ``tsvd`` at the same rank;
4. a tCURLoRA training step on a synthetic stack of linear layers (factored and materialized),
   and PEFT LoRA at the same rank when ``peft`` is importable.

Run from the repository root: ``PYTHONPATH=. python benchmarks/gpu_check.py [--device cuda]
[--output F]`` (``PYTHONPATH=.`` picks the working tree's tcur where none is installed)
(default output: ``$OUT/gpu_check.json`` when ``$OUT`` is set, else
``benchmarks/results/gpu_check.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 270.0


def timed(fn: Callable[[], Any], sync: Callable[[], None], repeat: int = 5) -> float:
    """Median seconds of ``fn`` over ``repeat`` runs after one warm-up, synchronised."""
    fn()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def correctness(torch: Any, tcur: Any, device: str) -> list[dict[str, Any]]:
    import numpy as np

    rows = []
    rng = np.random.default_rng(0)
    low = rng.standard_normal((200, 12)) @ rng.standard_normal((12, 150))
    hilbert = 1.0 / (np.arange(120)[:, None] + np.arange(90)[None, :] + 1.0)
    for name, A in (("low rank 12", low), ("hilbert", hilbert)):
        for dtype in (torch.float64, torch.float32):
            x = torch.as_tensor(A, dtype=dtype, device=device)
            d = tcur.decompose(x, 12, seed=0)
            ref = tcur.decompose(x.cpu(), 12, seed=0)
            error = float(tcur.linalg.relative_error(x, d.reconstruct()))
            ref_error = float(tcur.linalg.relative_error(x.cpu(), ref.reconstruct()))
            eps = float(torch.finfo(dtype).eps)
            rows.append(
                {
                    "case": f"decompose {name} {dtype}",
                    "device_kept": str(d.reconstruct().device) == str(x.device),
                    "error": error,
                    "cpu_error": ref_error,
                    "ok": error <= 10 * ref_error + 100 * eps,
                }
            )
    T = torch.randn(30, 20, 6, dtype=torch.float64, device=device)
    U, S, V = tcur.linalg.tsvd(T)
    back = tcur.linalg.tprod(U, S, tcur.linalg.ttranspose(V))
    rows.append({"case": "tsvd identity", "error": float((back - T).norm() / T.norm())})
    rows[-1]["ok"] = rows[-1]["error"] < 1e-12
    t = tcur.linalg.tcur(T, 5, seed=0)
    rows.append({"case": "tcur device", "ok": str(t.reconstruct().device) == str(T.device)})
    return rows


def round_trips(torch: Any, tcur: Any, device: str) -> dict[str, Any]:
    import tcur._backend as backend

    counted = {"calls": 0, "elements": 0}
    original = backend.to_numpy

    def counting(x: Any) -> Any:
        counted["calls"] += 1
        counted["elements"] = max(counted["elements"], int(getattr(x, "numel", lambda: 0)()))
        return original(x)

    patched = [m for n, m in sys.modules.items() if n.startswith("tcur") and hasattr(m, "to_numpy")]
    for module in patched:
        module.to_numpy = counting
    try:
        tcur.decompose(torch.randn(2000, 1500, device=device, dtype=torch.float64), 40, seed=0)
    finally:
        for module in patched:
            module.to_numpy = original
    return {"to_numpy_calls": counted["calls"], "largest_transfer_elements": counted["elements"]}


def tprod_timings(torch: Any, tcur: Any, device: str, sync: Callable[[], None]) -> list[Any]:
    rows = []
    for n1, n2, n4, n3 in ((768, 768, 64, 12), (3072, 768, 32, 12), (256, 256, 256, 64)):
        A = torch.randn(n1, n2, n3, device=device)
        B = torch.randn(n2, n4, n3, device=device)

        def floor(A: Any = A, B: Any = B, n3: int = n3) -> Any:
            FA, FB = torch.fft.rfft(A, dim=2), torch.fft.rfft(B, dim=2)
            prod = torch.bmm(FA.permute(2, 0, 1), FB.permute(2, 0, 1))
            return torch.fft.irfft(prod.permute(1, 2, 0), n=n3, dim=2)

        t_floor = timed(floor, sync)
        t_tprod = timed(lambda A=A, B=B: tcur.linalg.tprod(A, B, check_finite=False), sync)
        rows.append(
            {
                "shape": [n1, n2, n4, n3],
                "tprod_s": t_tprod,
                "floor_s": t_floor,
                "ratio_to_floor": t_tprod / t_floor,
            }
        )
    return rows


def decompose_timings(torch: Any, tcur: Any, device: str, sync: Callable[[], None]) -> Any:
    m, n, k = 4000, 3000, 50
    U = torch.linalg.qr(torch.randn(m, 200, device=device, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(n, 200, device=device, dtype=torch.float64))[0]
    scales = 0.97 ** torch.arange(200, device=device, dtype=torch.float64)
    A = (U * scales) @ V.T + 1e-6 * torch.randn(m, n, device=device, dtype=torch.float64)
    omega = torch.randn(n, k + 10, device=device, dtype=torch.float64)
    one_pass = timed(lambda: A @ omega, sync)
    t_dec = timed(lambda: tcur.decompose(A, k, seed=0), sync, repeat=3)
    T = torch.randn(256, 192, 8, device=device, dtype=torch.float64)
    t_tcur = timed(lambda: tcur.linalg.tcur(T, 16, seed=0), sync, repeat=3)
    t_tsvd = timed(lambda: tcur.linalg.tsvd(T, 16), sync, repeat=3)
    return {
        "decompose_s": t_dec,
        "one_pass_s": one_pass,
        "ratio_to_one_pass": t_dec / one_pass,
        "tcur_s": t_tcur,
        "tsvd_s": t_tsvd,
        "tcur_over_tsvd": t_tcur / t_tsvd,
    }


def adapter_timings(torch: Any, device: str, sync: Callable[[], None]) -> dict[str, Any]:
    from tcur.adapters import TCURLoRAConfig, apply

    def model() -> Any:
        layers = [torch.nn.Linear(1024, 1024) for _ in range(8)]
        return torch.nn.Sequential(*layers).to(device)

    x = torch.randn(16, 128, 1024, device=device)
    out: dict[str, Any] = {}
    for forward in ("factored", "materialized"):
        config = TCURLoRAConfig([str(i) for i in range(8)], rank=8, forward=forward)
        adapted = apply(model(), config)
        params = [p for p in adapted.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-3)

        def step(m: Any = adapted, o: Any = opt) -> None:
            o.zero_grad()
            m(x).square().mean().backward()
            o.step()

        out[f"tcurlora_{forward}_step_s"] = timed(step, sync)
    try:
        import peft

        lora = peft.get_peft_model(
            model(), peft.LoraConfig(r=8, target_modules=[str(i) for i in range(8)])
        )
        opt = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-3)

        def lora_step() -> None:
            opt.zero_grad()
            lora(x).square().mean().backward()
            opt.step()

        out["peft_lora_step_s"] = timed(lora_step, sync)
    except ImportError:
        out["peft_lora_step_s"] = None
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    out_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "benchmarks" / "results"
    output = Path(args.output) if args.output else out_dir / "gpu_check.json"
    report: dict[str, Any] = {"python": platform.python_version(), "device": args.device}
    started = time.monotonic()
    try:
        import torch

        import tcur
    except ImportError as failure:
        report["import_error"] = repr(failure)
        output.write_text(json.dumps(report, indent=2) + "\n")
        return report
    report["torch"] = torch.__version__
    if args.device.startswith("cuda"):
        report["cuda_available"] = torch.cuda.is_available()
        if not torch.cuda.is_available():
            output.write_text(json.dumps(report, indent=2) + "\n")
            return report
        report["gpu"] = torch.cuda.get_device_name()
        sync: Callable[[], None] = torch.cuda.synchronize
    else:
        sync = lambda: None  # noqa: E731
    sections: list[tuple[str, Callable[[], Any]]] = [
        ("correctness", lambda: correctness(torch, tcur, args.device)),
        ("round_trips", lambda: round_trips(torch, tcur, args.device)),
        ("tprod", lambda: tprod_timings(torch, tcur, args.device, sync)),
        ("decompose", lambda: decompose_timings(torch, tcur, args.device, sync)),
        ("adapters", lambda: adapter_timings(torch, args.device, sync)),
    ]
    for name, run in sections:
        if time.monotonic() - started > BUDGET_S:
            report[name] = "skipped: time budget spent"
            continue
        try:
            report[name] = run()
        except Exception:
            report[name] = {"error": traceback.format_exc(limit=4)}
        report["seconds"] = round(time.monotonic() - started, 1)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(name, json.dumps(report[name], default=str)[:400], flush=True)
    return report


if __name__ == "__main__":
    main()
