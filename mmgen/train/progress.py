"""Progress on stderr, of training (steps) and of evaluation (examples): a tqdm bar when tqdm is
installed and stderr is a terminal, else a plain line each logged step (evaluation: at most one
every ``line_every_s`` seconds, and at the end); nothing when disabled (``train.progress: false``,
``eval.progress: false``, ranks other than 0)."""
from __future__ import annotations

import sys
import time


def note(message: str) -> None:
    """One line on stderr, flushed (what a long step is doing: a judge trained, a file replaced)."""
    print(message, file=sys.stderr, flush=True)


def summary(record: dict) -> str:
    """``"loss 1.2345  lr 0.001"``: the losses of a metrics record."""
    return "  ".join(f"{k} {v:.4f}" for k, v in record.items() if k.endswith("loss") and isinstance(v, float))


class Progress:
    def __init__(self, total: int, done: int, *, enabled: bool = True, stream=None, unit: str = "step",
                 desc: str | None = None, line_every_s: float = 0.0):
        self.total, self.enabled, self.unit, self.line_every_s = total, enabled, unit, line_every_s
        self.stream = stream if stream is not None else sys.stderr
        self.start, self.started = done, time.perf_counter()
        self.last_line = float("-inf")
        self.bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, initial=done, file=self.stream, unit=unit, desc=desc,
                                dynamic_ncols=True)

    def update(self, step: int, record: dict | None = None) -> None:
        """``step`` steps (examples) are done; ``record`` holds the metrics of a logged step (a plain
        line is written for it when there is no bar; ``{}`` for a line without metrics)."""
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            if record:
                self.bar.set_postfix_str(summary(record), refresh=False)
        elif self.enabled and record is not None:
            now = time.perf_counter()
            if now - self.last_line < self.line_every_s and step < self.total:
                return
            self.last_line = now
            elapsed = record.get("elapsed_s", now - self.started)
            rate = (step - self.start) / max(now - self.started, 1e-9)
            eta = f", ETA {(self.total - step) / rate:.0f} s" if rate > 0 and step < self.total else ""
            parts = [f"{self.unit} {step:>6}/{self.total}", summary(record), f"({elapsed:.0f} s{eta})"]
            print("  ".join(p for p in parts if p), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
