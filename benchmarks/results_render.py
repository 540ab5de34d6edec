"""One renderer for the benchmark results: ``benchmarks/README.md`` and the docs Results page.

:func:`sections` reads ``benchmarks/results/`` once into :class:`Section` objects (what the
benchmark asks, its headline table, its plots, machine and date, the raw file);
:func:`to_markdown` and :func:`to_rst` write the same sections as Markdown and as
reStructuredText. ``benchmarks/_readme.py`` and ``docs/results_page.py`` only choose the output.

The headline format
-------------------
A benchmark states its claim in a top-level ``"headline"`` entry of its JSON::

    "headline": {
        "question": "Is tcur's CUR as accurate as SciPy's ID-CUR, and how much faster?",
        "rows": [
            {"method": "cur rank 50 vs scipy id", "figure": "error 1.04x, time 0.07x",
             "ratio": "13.8x faster", "target": "error <= 1.05x", "met": true}
        ],
        "answer": "optional: one paragraph saying what the rows show",
        "plots": ["optional: PNG names in results/; default: those named after the JSON"]
    }

``question`` (one sentence) and ``rows`` are required; in a row ``method`` and ``figure`` (the
measured numbers, as text the benchmark formats) are required, ``ratio`` (to the alternative),
``target`` (the aim, in words) and ``met`` (``true``/``false``/``null`` when there is no
target) may be ``null``. A result file without a headline still gets a section: its title, its
top-level scalar fields and a note that it states no headline. Raw JSON is linked, never dumped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COLUMNS = ("method", "measured", "ratio to the alternative", "target", "met?")
MAX_FIELDS = 12
"""Top-level scalar fields shown for a result file without a headline."""
MAX_TEXT = 300


@dataclass
class Section:
    """What one result file says, ready to be written in either markup."""

    name: str
    question: str
    rows: list[list[str]] = field(default_factory=list)
    answer: str = ""
    fields: list[tuple[str, str]] = field(default_factory=list)
    provenance: str = ""
    raw: Path | None = None
    plots: list[Path] = field(default_factory=list)
    problem: str = ""
    note: str = ""


def sections(results_dir: Path) -> list[Section]:
    """One section per JSON file in ``results_dir`` (full runs first), then orphan plots."""
    if not results_dir.is_dir():
        return []
    jsons = sorted(results_dir.glob("*.json"), key=lambda p: (p.stem.endswith("_quick"), p.stem))
    pngs = sorted(results_dir.glob("*.png"))
    out, used = [], set()
    for path in jsons:
        section = read_section(path, pngs)
        used.update(section.plots)
        out.append(section)
    for png in pngs:
        if png not in used:
            out.append(Section(png.stem, "A plot without a result file.", plots=[png]))
    return out


def owner(png: Path, jsons: list[Path]) -> Path | None:
    """The JSON file whose name is the longest prefix of the PNG's name, if any.

    Examples
    --------
    >>> jsons = [Path("bench_tprod.json"), Path("bench_tprod_quick.json")]
    >>> owner(Path("bench_tprod_quick.png"), jsons), owner(Path("other.png"), jsons)
    (PosixPath('bench_tprod_quick.json'), None)
    """
    prefixes = [j for j in jsons if png.stem.startswith(j.stem)]
    return max(prefixes, key=lambda j: len(j.stem), default=None)


def read_section(path: Path, pngs: list[Path]) -> Section:
    """The section of one result file (a readable note when the file or its headline is bad)."""
    jsons = sorted(path.parent.glob("*.json"))
    own = [p for p in pngs if owner(p, jsons) == path]
    section = Section(path.stem, "", raw=path, plots=own)
    if path.stem.endswith("_quick"):
        section.name += " (quick run: reduced sizes, numbers mean little)"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        section.problem = f"{path.name} could not be read: {err}"
        return section
    if not isinstance(data, dict):
        section.problem = f"{path.name} holds no JSON object"
        return section
    section.provenance = provenance(data)
    headline = data.get("headline")
    if isinstance(headline, dict) and isinstance(headline.get("rows"), list):
        _fill_headline(section, headline, path.parent)
    else:
        section.question = _title(data)
        section.fields = _fields(data)
        section.note = (
            "This file has no headline section (the format is described in "
            "benchmarks/results_render.py); its top-level fields follow."
        )
    return section


def _fill_headline(section: Section, headline: dict[str, Any], results_dir: Path) -> None:
    section.question = _text(headline.get("question")) or "(no question stated)"
    section.answer = _text(headline.get("answer"))
    for row in headline["rows"]:
        if not isinstance(row, dict):
            continue
        met = row.get("met")
        verdict = "yes" if met is True else "no" if met is False else "n/a"
        cells = [row.get("method"), row.get("figure"), row.get("ratio"), row.get("target")]
        section.rows.append([_text(c) or "n/a" for c in cells] + [verdict])
    plots = headline.get("plots")
    if isinstance(plots, list) and plots:
        section.plots = [results_dir / str(p) for p in plots if (results_dir / str(p)).is_file()]


def _title(data: dict[str, Any]) -> str:
    for key in ("question", "benchmark", "title", "description"):
        if isinstance(data.get(key), str) and data[key]:
            return _text(data[key])
    return ""


def _fields(data: dict[str, Any]) -> list[tuple[str, str]]:
    skip = {"machine", "headline"}
    flat = [
        (k, v)
        for k, v in data.items()
        if k not in skip and (v is None or isinstance(v, str | int | float | bool))
    ]
    return [(k, cell(v)) for k, v in flat[:MAX_FIELDS]]


def provenance(data: dict[str, Any]) -> str:
    """``"machine: ...; date: ..."`` from a result file, or a note that it states neither.

    Examples
    --------
    >>> provenance({"machine": {"date": "2026-01-02 03:04 UTC", "cpu_count": 2,
    ...                         "platform": "Linux", "torch": "2.13.0"}})
    'machine: Linux, 2 CPU cores, torch 2.13.0; date: 2026-01-02 03:04 UTC'
    >>> provenance({"rows": []})
    'machine and date not recorded in this file'
    """
    machine = data.get("machine")
    if isinstance(machine, dict):
        date = machine.get("date") or data.get("date")
        load = machine.get("load_average_1min")
        busy = f"; load average {load}" if load is not None else ""
        return f"machine: {_describe(machine)}; date: {date or 'not recorded'}{busy}"
    if machine or data.get("date"):
        return f"machine: {machine or 'not recorded'}; date: {data.get('date') or 'not recorded'}"
    return "machine and date not recorded in this file"


def _describe(machine: dict[str, Any]) -> str:
    parts = [str(machine[k]) for k in ("platform", "processor") if machine.get(k)]
    if machine.get("cpu_count"):
        parts.append(f"{machine['cpu_count']} CPU cores")
    if machine.get("torch"):
        threads = machine.get("torch_threads")
        count = f" ({threads} thread{'' if threads == 1 else 's'})" if threads else ""
        parts.append(f"torch {machine['torch']}{count}")
    if machine.get("cuda"):
        parts.append(f"GPU {machine['cuda']}")
    return ", ".join(parts) or "not recorded"


def cell(value: Any) -> str:
    """A value as table text: floats to 4 significant digits, ``None`` as ``n/a``, long text cut.

    Examples
    --------
    >>> cell(0.123456), cell(None), cell(True), cell(12345)
    ('0.1235', 'n/a', 'True', '12,345')
    """
    if value is None or value == "":
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return _text(value)


def _text(value: Any) -> str:
    text = " ".join(str(value).split()) if value is not None else ""
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()


# --- Markdown ---------------------------------------------------------------------------------


def to_markdown(items: list[Section], base: Path) -> str:
    """The sections as Markdown; file links are relative to the folder ``base``."""
    return "".join(_md_section(s, base) for s in items)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _md_section(s: Section, base: Path) -> str:
    out = [f"\n## {s.name}\n\n"]
    if s.problem:
        return out[0] + f"{_md(s.problem)}\n"
    if s.question:
        out.append(f"**Question.** {_md(s.question)}\n\n")
    if s.note:
        out.append(f"*{_md(s.note)}*\n\n")
    if s.rows:
        out.append("| " + " | ".join(COLUMNS) + " |\n|" + " --- |" * len(COLUMNS) + "\n")
        out += ["| " + " | ".join(_md(c) for c in row) + " |\n" for row in s.rows]
        out.append("\n")
    if s.answer:
        out.append(f"{_md(s.answer)}\n\n")
    if s.fields:
        out.append("| field | value |\n| --- | --- |\n")
        out += [f"| {_md(k)} | {_md(v)} |\n" for k, v in s.fields]
        out.append("\n")
    out += [f"![{p.stem}]({_rel(p, base)})\n\n" for p in s.plots]
    if s.provenance:
        out.append(f"*{_md(s.provenance)}.*")
    if s.raw is not None:
        out.append(f" Raw data: [{s.raw.name}]({_rel(s.raw, base)}).")
    out.append("\n")
    return "".join(out)


# --- reStructuredText -------------------------------------------------------------------------


def to_rst(items: list[Section], base: Path) -> str:
    """The sections as reStructuredText; paths are relative to the folder ``base`` (docs/)."""
    return "".join(_rst_section(s, base) for s in items)


def rst_escape(text: str) -> str:
    r"""Escape reST inline markup in ``text``.

    Examples
    --------
    >>> rst_escape("*a* `b` |c| d_")
    '\\*a\\* \\`b\\` \\|c\\| d\\_'
    """
    for char in ("\\", "*", "`", "|", "_", "[", "<"):
        text = text.replace(char, "\\" + char)
    if text[:1] in tuple("-+#=:.>%~^'\"!"):  # would start a list, a title, a comment, ...
        text = "\\" + text
    return text


def _rst_section(s: Section, base: Path) -> str:
    title = rst_escape(s.name)
    out = [f"{title}\n{'-' * len(title)}\n\n"]
    if s.problem:
        return out[0] + f"{rst_escape(s.problem)}\n\n"
    if s.question:
        out.append(f"**Question.** {rst_escape(s.question)}\n\n")
    if s.note:
        out.append(f"*{rst_escape(s.note)}*\n\n")
    if s.rows:
        out.append(_rst_table("Headline", list(COLUMNS), s.rows))
    if s.answer:
        out.append(f"{rst_escape(s.answer)}\n\n")
    if s.fields:
        out.append(_rst_table("Fields", ["field", "value"], [list(f) for f in s.fields]))
    for p in s.plots:
        out.append(f".. figure:: {_rel(p, base)}\n   :width: 90%\n\n   ``{p.name}``\n\n")
    if s.provenance:
        out.append(f"*{rst_escape(s.provenance)}.*")
    if s.raw is not None:
        out.append(f" Raw data: :download:`{s.raw.name} <{_rel(s.raw, base)}>`.")
    out.append("\n\n")
    return "".join(out)


def _rst_table(caption: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f".. list-table:: {caption}", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        first, *rest = [rst_escape(c) for c in row]
        lines += [f"   * - {first}", *(f"     - {c}" for c in rest)]
    return "\n".join(lines) + "\n\n"
