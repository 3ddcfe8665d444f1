"""The run's logs: CSV tables (`log.csv` per step, `val.csv` per validation) and the loss plot."""

import csv
import io
from pathlib import Path

import numpy as np

from ..utils import atomic


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a log (`log.csv`, `val.csv`), each a dict of its cells as written."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_csv(path: Path, row: dict) -> None:
    """Append a row; a log written by an older version with fewer columns is rewritten first with
    the new header (its rows keep empty cells there), so that a resumed run's log stays one table."""
    if path.exists():
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        if missing := [k for k in row if k not in header]:
            rows = read_csv(path)
            header = header + missing
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
            atomic.write_text(path, text.getvalue())
    else:
        header = list(row)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        if f.tell() == 0:
            writer.writeheader()
        writer.writerow(row)


def plot_losses(log: Path, path: Path) -> None:
    from matplotlib.figure import Figure

    rows = read_csv(log)
    if not rows:
        return
    fig = Figure(figsize=(8, 4))
    ax = fig.add_subplot()
    steps = np.array([int(r["step"]) for r in rows])
    for key in [k for k in rows[0] if k not in ("step", "lr", "seconds")]:
        values = np.array([float(r[key]) for r in rows])
        window = max(1, len(values) // 50)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, label=key)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
