"""Agreement over large projects: seconds and peak memory of the project's statistics.

Uses the pairwise projects that `export_memory.py` seeds (seeding them if missing), and
computes the agreement the API and the admin page show, each size in a fresh process:

    python benchmarks/agreement_scale.py                  # 200,000 and 1,000,000 records
    python benchmarks/agreement_scale.py --sizes 20000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from export_memory import create_database, seed, setup_django


def run_agreement(project_id: int) -> dict:
    from feedback.models import Project
    from feedback.selectors import project_agreement

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    project = Project.objects.get(pk=project_id)
    started = time.perf_counter()
    pairwise = project_agreement(project=project)["pairwise"]
    return {
        "seconds": time.perf_counter() - started,
        "items": pairwise["items"],
        "fleiss_kappa": pairwise["fleiss_kappa"],
        "baseline_mb": baseline,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--run", type=int, metavar="PROJECT_ID", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        setup_django()
        print(json.dumps(run_agreement(args.run)))
        return 0
    create_database()
    setup_django()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(f"{'records':>10} {'tasks':>8} {'s':>6} {'base MB':>8} {'peak MB':>8}  fleiss kappa")
    for size in args.sizes:
        project_id = seed(size)
        out = subprocess.run(
            [sys.executable, __file__, "--run", str(project_id)],
            check=True,
            capture_output=True,
            text=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        kappa = "undefined" if r["fleiss_kappa"] is None else f"{r['fleiss_kappa']:.4f}"
        print(
            f"{size:>10,} {r['items']:>8,} {r['seconds']:>6.1f} {r['baseline_mb']:>8.0f}"
            f" {r['peak_mb']:>8.0f}  {kappa}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
