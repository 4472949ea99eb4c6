"""Run every benchmark of the project and write benchmarks/RESULTS.md.

    python benchmarks/run_all.py

Each bench_*.py is a script that prints its figures; this runner records the
machine, the date, each script's output and the command to reproduce it. The
comparison with the design the review criticised (one QueryOrders per order;
SL/TP checked every 60 s) is printed by bench_orders.py and bench_paper.py.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    cpu = names[0] if names else cpu
    system = f"{platform.system()} {platform.release()}"
    return f"{system}, {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> int:
    scripts = sorted(p for p in HERE.glob("bench_*.py"))
    sections = []
    failed = []
    for script in scripts:
        print(f"running {script.name} ...", file=sys.stderr)
        start = time.perf_counter()
        run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=HERE.parent,
                             timeout=900, check=False)
        elapsed = time.perf_counter() - start
        output = run.stdout.strip() or "(no output)"
        if run.returncode != 0:
            failed.append(script.name)
            output += f"\n\nFAILED (exit {run.returncode}):\n{run.stderr.strip()[-2000:]}"
        sections.append(f"## {script.name}\n\n`python benchmarks/{script.name}` ({elapsed:.1f} s)\n\n"
                        f"```\n{output}\n```\n")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (f"# Benchmark results\n\nMachine: {machine()}  \nDate: {now}  \n"
            f"Reproduce: `python benchmarks/run_all.py` (writes this file)\n\n"
            "Figures from a noisy shared machine: orders of magnitude, not promises. No benchmark asserts.\n\n"
            + "\n".join(sections))
    (HERE / "RESULTS.md").write_text(text)
    print(f"wrote {HERE / 'RESULTS.md'}" + (f"; FAILED: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
