"""docs/methods.md is the method reference the code cites; these tests keep it complete and the only one.

WHAT TO DO WHEN A TEST HERE FAILS

* ``test_no_file_cites_the_external_reference``: a file cites the old external method reference, which is
  not part of this repository. Cite the matching section of docs/methods.md instead, in the form
  ``docs/methods.md, "<section heading>"`` (e.g. ``docs/methods.md, "PCGrad"``); add a section there if
  none fits.
* ``test_every_builder_and_balancer_has_a_section``: a builder or balancer was registered without a
  section in docs/methods.md. Add one (under "Architectures", "Loss weightings" or "Gradient
  aggregators"): a ``###`` heading, then a blank line, then the line ``Registry name: `<name>`.``, then what
  it computes, its defaults as implemented, and its paper (authors, venue, year).
* ``test_every_section_names_a_registered_method``: a section's ``Registry name`` no longer exists; rename
  or remove the section (and the citations of it: ``grep -rn 'methods.md' .``).
* ``test_section_headings_are_unique``: two sections share a heading, so a citation of it is ambiguous;
  rename one (and its citations).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mtl_keras import balancers, builders

ROOT = Path(__file__).resolve().parents[1]
METHODS = ROOT / "docs" / "methods.md"
#: Where citations are searched: every file below these folders, and these files.
SEARCHED = ("mtl_keras", "tests", "benchmarks", "zoo", "docs", "README.md")
SKIPPED_PARTS = {"__pycache__", ".ipynb_checkpoints"}
# Spelled in two pieces so that this file does not match itself.
OLD_REFERENCE = re.compile(rb"\bREFERENCE" + rb"(\.md|'s)")
SECTION = re.compile(r"^#{2,4} (?P<heading>.+)\n\nRegistry name: `(?P<name>[A-Za-z0-9_]+)`\.$", re.MULTILINE)


def searched_files() -> list[Path]:
    files = []
    for entry in SEARCHED:
        path = ROOT / entry
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        files += [p for p in candidates if not SKIPPED_PARTS & set(p.relative_to(ROOT).parts)]
    return files


def registered_names() -> list[str]:
    by_kind = balancers.names()
    return sorted({*builders.names(), *by_kind["weightings"], *by_kind["aggregators"]})


def documented() -> dict[str, str]:
    """``{registry name: section heading}`` of docs/methods.md."""
    return {m["name"]: m["heading"] for m in SECTION.finditer(METHODS.read_text(encoding="utf-8"))}


def test_no_file_cites_the_external_reference() -> None:
    offenders = []
    for path in searched_files():
        for number, line in enumerate(path.read_bytes().splitlines(), start=1):
            if OLD_REFERENCE.search(line):
                offenders.append(
                    f"{path.relative_to(ROOT)}:{number}: {line.decode(errors='replace').strip()}"
                )
    assert not offenders, (
        "These lines cite the external method reference, which is not in this repository. Cite the matching "
        'section of docs/methods.md instead (docs/methods.md, "<section heading>"):\n' + "\n".join(offenders)
    )


@pytest.mark.parametrize("name", registered_names())
def test_every_builder_and_balancer_has_a_section(name: str) -> None:
    assert name in documented(), (
        f"{name!r} is registered but docs/methods.md has no section for it. Add a '### <Name>' heading, a blank "
        f"line and the line 'Registry name: `{name}`.', then what it computes, its defaults and its paper."
    )


def test_every_section_names_a_registered_method() -> None:
    stale = sorted(set(documented()) - set(registered_names()))
    assert not stale, (
        f"docs/methods.md has sections for {stale}, which are not registered builders or balancers. Rename "
        "or remove them, and update the citations of those sections."
    )


def test_section_headings_are_unique() -> None:
    headings = re.findall(r"^#+ (.+)$", METHODS.read_text(encoding="utf-8"), re.MULTILINE)
    repeated = sorted({h for h in headings if headings.count(h) > 1})
    assert not repeated, (
        f"docs/methods.md repeats the section headings {repeated}; citations need unique ones."
    )
