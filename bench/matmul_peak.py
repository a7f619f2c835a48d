"""This machine's dense matmul peak in bf16 and fp32: ``torch.mm`` of square matrices in a timed loop.

The figure is the best of a few repeats (GFLOP/s = 2 n^3 iterations / seconds), so a repeat slowed by
another process on the shared cores does not pull it down. ``bench/step_time.py`` calls
:func:`matmul_peak` in the same run to express training throughput as a share of the bf16 peak.

    .venv/bin/python bench/matmul_peak.py --n 2048
"""

from __future__ import annotations

import argparse
import json
import time

import torch

_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def matmul_gflops(dtype: str, n: int = 2048, seconds: float = 2.0, repeats: int = 3) -> dict[str, float]:
    """Best and median GFLOP/s of ``torch.mm`` on ``n x n`` matrices of ``dtype`` (``"bf16"``/``"fp32"``)."""
    dt = _DTYPES[dtype]
    a = torch.randn(n, n).to(dt)
    b = torch.randn(n, n).to(dt)
    out = torch.empty(n, n, dtype=dt)
    torch.mm(a, b, out=out)  # warm-up: oneDNN picks and caches its kernel
    # iterations per repeat from one timed call, so every repeat lasts about ``seconds``
    t0 = time.perf_counter()
    torch.mm(a, b, out=out)
    one = max(time.perf_counter() - t0, 1e-6)
    iters = max(1, int(seconds / one))
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            torch.mm(a, b, out=out)
        wall = time.perf_counter() - t0
        rates.append(2.0 * n**3 * iters / wall / 1e9)
    rates.sort()
    return {"gflops": rates[-1], "gflops_median": rates[len(rates) // 2], "n": n, "iters": iters,
            "repeats": repeats, "threads": torch.get_num_threads()}


def matmul_peak(n: int = 2048, seconds: float = 2.0, repeats: int = 3) -> dict[str, dict[str, float]]:
    """``{"bf16": {...}, "fp32": {...}}`` from :func:`matmul_gflops`."""
    return {d: matmul_gflops(d, n, seconds, repeats) for d in ("bf16", "fp32")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--seconds", type=float, default=2.0, help="length of one timed repeat")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    result = matmul_peak(args.n, args.seconds, args.repeats)
    for d, r in result.items():
        print(f"{d}: {r['gflops']:.0f} GFLOP/s best (median {r['gflops_median']:.0f}), {r['n']}x{r['n']}, "
              f"{r['threads']} threads")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
