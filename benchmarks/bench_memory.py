"""Page faults of a CPU training step with and without glibc keeping freed blocks (mmgen.memory).

    python benchmarks/bench_memory.py [--steps 10] [--presets pixelcnn-mnist,diffusion-mnist,vae-mnist]

Each preset's model trains in a fresh process at one thread on one real batch of its training data
(batch size of the preset; zero_grad + loss + backward + Adam step), 3 untimed steps, then
``--steps`` measured: minor page faults (``getrusage``), CPU seconds (user + system) and wall seconds
per step. ``default`` is glibc as it comes, ``keep`` calls :func:`mmgen.memory.keep_freed_memory`
first, as the trainer does on the CPU. ``faults default/keep`` > 1: fewer faults with it;
``cpu default/keep`` > 1: less CPU time with it. Each (preset, mode) runs in ``--rounds`` processes,
the modes alternating (default, keep, then keep, default, ...) so that a drift of the machine's speed
falls on both; a row gives the medians over its rounds and ``cpu_s_per_step_rounds`` each round's.
The CPU time is less sensitive than the wall time to other load.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

from common import parser, print_table, write_json

PRESETS = ("pixelcnn-mnist", "diffusion-mnist", "vae-mnist")
WARMUP = 3
MODES = ("default", "keep")


def child(preset: str, mode: str, steps: int) -> dict:
    """One preset, one mode, in this process: per-step faults and times."""
    import torch

    import mmgen.memory
    from mmgen import runs
    from mmgen.models import from_config
    torch.set_num_threads(1)
    applied = mmgen.memory.keep_freed_memory() if mode == "keep" else False
    config = runs.load_config(preset)
    data = runs.dataset(config, "train")
    torch.manual_seed(0)
    model = from_config(runs.model_config(config, data))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = next(iter(data.batches(config["train"]["batch_size"], shuffle=True)))["x"]

    def step():
        optimizer.zero_grad(set_to_none=True)
        model.loss(x).backward()
        optimizer.step()

    for _ in range(WARMUP):
        step()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"preset": preset, "mode": mode, "applied": applied, "batch": int(x.shape[0]),
            "faults_per_step": (after.ru_minflt - before.ru_minflt) / steps,
            "cpu_s_per_step": cpu / steps, "system_s_per_step": (after.ru_stime - before.ru_stime) / steps,
            "wall_s_per_step": wall / steps}


def medians(rounds: list[dict]) -> dict:
    """One (preset, mode)'s row from its rounds: the medians of the measures, each round's CPU time."""
    measures = ("faults_per_step", "cpu_s_per_step", "system_s_per_step", "wall_s_per_step")
    return {**rounds[0], **{key: statistics.median(r[key] for r in rounds) for key in measures},
            "cpu_s_per_step_rounds": [r["cpu_s_per_step"] for r in rounds]}


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10, help="measured steps per process")
    p.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets")
    p.add_argument("--rounds", type=int, default=3, help="processes per (preset, mode), modes alternating")
    p.add_argument("--child", nargs=2, metavar=("PRESET", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {args.rounds}")
    if args.child:
        print(json.dumps(child(*args.child, args.steps)))
        return
    if args.device != "cpu":
        raise ValueError(f"--device: page faults of the CPU allocator are measured on cpu only, got {args.device!r}")
    rows = []
    for preset in args.presets.split(","):
        runs = {mode: [] for mode in MODES}
        for r in range(args.rounds):
            for mode in (MODES if r % 2 == 0 else MODES[::-1]):
                out = subprocess.run([sys.executable, __file__, "--child", preset, mode, "--steps", str(args.steps)],
                                     capture_output=True, text=True, check=True)
                runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
        measured = {mode: medians(runs[mode]) for mode in MODES}
        for mode in MODES:
            rows.append({**measured[mode],
                         "faults default/keep": measured["default"]["faults_per_step"] / max(measured["keep"]["faults_per_step"], 1.0),
                         "cpu default/keep": measured["default"]["cpu_s_per_step"] / measured["keep"]["cpu_s_per_step"]})
    print_table(rows, ["preset", "mode", "applied", "batch", "faults_per_step", "system_s_per_step", "cpu_s_per_step",
                       "wall_s_per_step", "faults default/keep", "cpu default/keep"])
    import torch
    torch.set_num_threads(1)  # the children's thread count, as the record's machine.threads says
    write_json("memory", "cpu", rows, args.out, steps=args.steps, warmup=WARMUP, rounds=args.rounds)


if __name__ == "__main__":
    main()
