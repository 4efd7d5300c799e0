"""What the benchmark scripts share: the command line that reproduces a run, the machine it ran on, mean ± std
over seeds, the head of a Markdown report and writing the results.

It does not import TensorFlow, so a script can import it before TensorFlow starts (some set environment
variables or thread counts first). A script imports it as ``_common`` after putting its own folder on ``sys.path``, which
works whether it runs as ``python benchmarks/<name>.py`` or is loaded from its path by a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser described by the first paragraph of the script's docstring."""
    return argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])


def report_arguments(parser: argparse.ArgumentParser) -> None:
    """``--json`` and ``--markdown``, where :func:`write_report` writes."""
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--markdown", default=None, help="write a Markdown table here")


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """``python benchmarks/<script> <arguments>``: the command that reproduces this run (``argv`` None: the
    process's own arguments), as written at the top of the Markdown."""
    return "python " + shlex.join(
        [f"benchmarks/{Path(script).name}", *(sys.argv[1:] if argv is None else argv)]
    )


def machine(**extra: Any) -> dict[str, Any]:
    """The platform and Python version, then ``extra``."""
    return {"platform": platform.platform(), "python": platform.python_version(), **extra}


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """``{"mean", "std"}`` (the sample standard deviation; 0 for one value)."""
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0}


def plus_minus(s: dict[str, float], scale: float, digits: int) -> str:
    """A :func:`mean_std` result as ``mean ± std``, both times ``scale``."""
    return f"{scale * s['mean']:.{digits}f} ± {scale * s['std']:.{digits}f}"


def markdown_head(title: str, command: str) -> list[str]:
    """The first lines of a report: the title, then the command in a fenced block."""
    return [title, "", "```", command, "```", ""]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (imported only when a figure is drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: Path, dpi: int = 110) -> None:
    """Lay out, save and close ``figure``."""
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    pyplot().close(figure)


def write_results(
    result: dict[str, Any],
    out: Path,
    markdown: Callable[[dict[str, Any]], str],
    plot: Callable[[dict[str, Any], Path], None],
    figure: str,
    indent: int | None = 2,
) -> None:
    """``out/results.json``, ``out/results.md`` and the figure ``out/<figure>``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=indent))
    (out / "results.md").write_text(markdown(result))
    plot(result, out / figure)


def write_report(
    report: dict[str, Any],
    markdown: Callable[[dict[str, Any]], str],
    json_path: str | Path | None,
    markdown_path: str | Path | None,
) -> None:
    """The report as JSON and as Markdown where asked (``--json``/``--markdown``), and the Markdown on
    stdout."""
    text = markdown(report)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if markdown_path:
        Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown_path).write_text(text, encoding="utf-8")
    sys.stdout.write(text)
