"""Training progress on stderr: a tqdm bar when tqdm is installed and stderr is a terminal, else a
plain line each logged step; nothing when disabled (``train.progress: false``, ranks other than 0)."""
from __future__ import annotations

import sys


def summary(record: dict) -> str:
    """``"loss 1.2345  lr 0.001"``: the losses of a metrics record."""
    return "  ".join(f"{k} {v:.4f}" for k, v in record.items() if k.endswith("loss") and isinstance(v, float))


class Progress:
    def __init__(self, total: int, done: int, *, enabled: bool = True, stream=None):
        self.total, self.enabled = total, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, initial=done, file=self.stream, unit="step", dynamic_ncols=True)

    def update(self, step: int, record: dict | None = None) -> None:
        """Step ``step`` is done; ``record`` holds its metrics when it was a logged step."""
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            if record:
                self.bar.set_postfix_str(summary(record), refresh=False)
        elif self.enabled and record:
            elapsed = record.get("elapsed_s", 0.0)
            print(f"step {step:>6}/{self.total}  {summary(record)}  ({elapsed:.0f} s)", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
