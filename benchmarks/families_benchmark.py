"""Does the search earn its place? The demo pipeline on the task-families benchmark over pipeline seeds.

    python benchmarks/families_benchmark.py --seeds 0,1,2,100 --exp_root exp/bench   # runs what is missing
    python benchmarks/families_benchmark.py --seeds 0,1,2,100 --exp_root exp/bench --no-run   # tables only

Each seed is one `python main.py -e <prefix>_s<seed> --config exp.demo --seed <seed>` (teachers, ES and
random search at one resource level, retrains with three training seeds each); a finished seed is
reread, an unfinished one continued. Prints one markdown row per pipeline seed: the ES winner's mean
± std over its retrain seeds, the share_fixed curve at its resource, the margin and whether it exceeds
one std, the random-search winner, the families oracle and the fixed baselines, and the realised
within- / cross-family overlap of both searched partitions. Every number comes from the runs' table.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEADER = ("| pipeline seed | ES best | share_fixed curve @ ES resource | ES margin | > 1 std | random best (margin) "
          "| oracle (families) | share_fixed s=1/3 | share_all | independent | ES within / cross overlap "
          "| random within / cross |")


def run_seed(exp_root: Path, name: str, seed: int, extra: list[str]) -> None:
    """Start (or continue) one pipeline seed; its output goes to <run>.out beside the run folder."""
    folder = exp_root / name
    args = ["-e", name, "--exp_root", str(exp_root)]
    args += ["--continue"] if (folder / "config.json").exists() else ["--config", "exp.demo", "--seed", str(seed), *extra]
    exp_root.mkdir(parents=True, exist_ok=True)
    with open(exp_root / f"{name}.out", "w") as out:
        subprocess.run([sys.executable, str(REPO / "main.py"), *args], stdout=out, stderr=subprocess.STDOUT, check=True)


def row(table: dict) -> str:
    """One markdown row from a pipeline's table.json."""
    variants, structure = table["summary"]["variants"], table.get("structure", {})

    def stat(name: str) -> str:
        if name not in variants:  # a baseline this run did not train
            return "-"
        e = variants[name]["mean"]
        return f"{100 * e['mean']:.1f} ± {100 * e['std']:.1f}"

    def margin(name: str) -> str:
        m = variants[name]["margin"]
        return "-" if m is None else f"{100 * m:+.1f}"

    def overlap(name: str) -> str:
        entry = structure.get(name)
        return "-" if not entry else f"{entry['within']:.2f} / {entry['cross']:.2f}"

    es = variants["es_best"]
    at = es["share_fixed_at_resource"]
    beats = "-" if es["margin"] is None else ("yes" if es["margin"] > es["mean"]["std"] else "no")
    fixed = next(n for n in variants if n.startswith("share_fixed_"))
    cells = [str(table["settings"].get("seed", "?")), stat("es_best"), "-" if at is None else f"{100 * at:.1f}",
             margin("es_best"), beats, f"{stat('random_best')} ({margin('random_best')})",
             stat("families"), stat(fixed), stat("share_all"), stat("independent"),
             overlap("es_best"), overlap("random_best")]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2", help="comma list of pipeline seeds")
    parser.add_argument("--exp_root", default="exp/families_benchmark")
    parser.add_argument("--prefix", default="demo")
    parser.add_argument("--no-run", dest="run", action="store_false", help="only read finished tables")
    args, extra = parser.parse_known_args(argv)
    root = Path(args.exp_root)
    print(HEADER)
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    for seed in (int(s) for s in args.seeds.split(",")):
        name = f"{args.prefix}_s{seed}"
        if args.run and not (root / name / "table.json").exists():
            run_seed(root, name, seed, extra)
        table_path = root / name / "table.json"
        if table_path.exists():
            print(row(json.loads(table_path.read_text())), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
