"""Compare two step-time runs (``benchmarks/step_time.py --json``): each configuration's ratio to the
equal-weights step in the same run, before and after, and the change in percent.

Used for the training-step redesign (issue 13): the code of commit 20d24d7 and the redesigned code, timed one
after the other on the same machine::

    git archive 20d24d7 | tar -x -C /tmp/old
    (cd /tmp/old && PYTHONPATH=. python benchmarks/step_time.py --json /tmp/before.json)
    python benchmarks/step_time.py --json benchmarks/results/step_time.json --markdown benchmarks/results/step_time.md
    python benchmarks/compare_step_time.py /tmp/before.json benchmarks/results/step_time.json \
        --markdown benchmarks/results/step_time_redesign.md

The ratios are the measure (both runs see the same machine, so their equal-weights steps differ only by
noise); the absolute equal-weights times are printed too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common


def compare(before: dict, after: dict) -> list[dict]:
    rows = []
    for key, old in before["results"].items():
        new = after["results"].get(key)
        if new is None:
            continue
        rows.append(
            {
                "config": key,
                "before": old["ratio_to_ew"],
                "after": new["ratio_to_ew"],
                "change_percent": 100.0 * (new["ratio_to_ew"] / old["ratio_to_ew"] - 1.0),
                "before_p10": old["ratio_p10_to_ew_p10"],
                "after_p10": new["ratio_p10_to_ew_p10"],
            }
        )
    return rows


def markdown(rows: list[dict], before: dict, after: dict, command: str, limit: float) -> str:
    worst = max(rows, key=lambda r: r["change_percent"])
    lines = [
        *_common.markdown_head(
            "Step time before and after the training-step redesign (ratio to EW)", command
        ),
        f"Equal-weights step: {before['meta']['ew_ms_per_step']:.3f} ms before, "
        f"{after['meta']['ew_ms_per_step']:.3f} ms after (same machine, one run after the other).",
        "",
        "| balancer | ratio before | ratio after | change | p10 ratio before | p10 ratio after |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['config']}` | {r['before']:.3f} | {r['after']:.3f} | {r['change_percent']:+.1f} % | "
            f"{r['before_p10']:.3f} | {r['after_p10']:.3f} |"
        )
    verdict = "within" if worst["change_percent"] <= limit else "NOT within"
    lines += [
        "",
        f"Worst change: `{worst['config']}` {worst['change_percent']:+.1f} % ({verdict} the +{limit:.0f} % limit).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("before", help="step_time.py --json output of the old code")
    parser.add_argument("after", help="step_time.py --json output of the new code")
    parser.add_argument("--limit", type=float, default=5.0, help="allowed worsening of a ratio, percent")
    parser.add_argument("--markdown", default=None, help="write the table here")
    args = parser.parse_args(argv)
    before = json.loads(Path(args.before).read_text(encoding="utf-8"))
    after = json.loads(Path(args.after).read_text(encoding="utf-8"))
    rows = compare(before, after)
    text = markdown(rows, before, after, _common.command_line(__file__, argv), args.limit)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")
    return 0 if max(r["change_percent"] for r in rows) <= args.limit else 1


if __name__ == "__main__":
    raise SystemExit(main())
