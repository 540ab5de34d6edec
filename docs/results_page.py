"""Render ``benchmarks/results/`` (JSON + PNG) as reStructuredText for the Results page.

Called from ``conf.py`` on every build. The benchmark scripts own their JSON layouts, so this
module does not assume one: top-level scalars (machine, date, sizes, ...) become a field table,
lists of records become tables, dictionaries of records become tables keyed by name, and PNG
files are shown under the JSON file whose name they start with. Unreadable files are reported on
the page instead of failing the build.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MAX_ROWS = 60
MAX_CELL = 90
"""Longest rendering of a list or nested value in a table cell (longer ones are cut)."""
MAX_TEXT = 400
"""Longest rendering of a text value (notes, conditions) in a table cell."""
MACHINE_KEYS = ("machine", "host", "hardware", "environment", "system", "platform")
"""Top-level keys (or key suffixes) of a machine description."""
DATE_KEYS = ("date", "timestamp", "datetime", "created")
"""Top-level keys (or key suffixes) of a date."""
TITLE_KEYS = ("benchmark", "title", "description")
"""Top-level string fields that describe a result file (the first present one is its title)."""


def write(results_dir: Path, target: Path) -> None:
    """Write the rendered page body to ``target`` (only when its text changes)."""
    text = render(results_dir, target.parent.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")


def render(results_dir: Path, docs_dir: Path) -> str:
    """reST for every JSON/PNG in ``results_dir``; paths are written relative to ``docs_dir``."""
    jsons = sorted(results_dir.glob("*.json")) if results_dir.is_dir() else []
    pngs = sorted(results_dir.glob("*.png")) if results_dir.is_dir() else []
    if not jsons and not pngs:
        return (
            "No benchmark results are present in ``benchmarks/results/`` yet. Run ``make bench`` "
            "and rebuild the documentation.\n"
        )
    jsons.sort(key=lambda p: (_is_quick(p), p.stem))  # full runs first, then quick runs
    owner = {png: _owner(png, jsons) for png in pngs}
    parts: list[str] = []
    claimed: set[Path] = set()
    for path in jsons:
        own = [p for p in pngs if owner[p] == path]
        claimed.update(own)
        parts.append(_render_file(path, own, docs_dir))
    rest = [p for p in pngs if p not in claimed]
    if rest:
        parts.append(_section("Other plots", "-") + "".join(_figure(p, docs_dir) for p in rest))
    return "\n".join(parts)


def _is_quick(path: Path) -> bool:
    return path.stem.endswith("_quick")


def _owner(png: Path, jsons: list[Path]) -> Path | None:
    """The JSON file with the longest stem that the PNG's stem starts with."""
    matches = [j for j in jsons if png.stem.startswith(j.stem)]
    return max(matches, key=lambda j: len(j.stem)) if matches else None


def _matches(key: str, names: tuple[str, ...]) -> bool:
    key = key.lower()
    return any(key == n or key.endswith("_" + n) for n in names)


def _render_file(path: Path, images: list[Path], docs_dir: Path) -> str:
    rel = _rel(path, docs_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        out = [_section(path.stem, "-")]
        out.append(f"``{path.name}`` could not be read: {_escape(str(exc))}\n\n")
    else:
        out = [_section(_title(path, data), "-")]
        if isinstance(data, dict):
            data = dict(data)
            out.append(_provenance(data))
        out.append(f"Raw data: :download:`{path.name} <{rel}>`.\n\n")
        out.append(_render_value("summary", data, level=0))
    out.extend(_figure(p, docs_dir) for p in images)
    return "".join(out)


def _title(path: Path, data: Any) -> str:
    """The file's name, its own description (``benchmark``/``title`` field) and a quick-run mark."""
    title = path.stem
    if isinstance(data, dict):
        described = [v for k in TITLE_KEYS if isinstance(v := data.get(k), str) and v]
        title += f": {described[0]}" if described else ""
    return title + (" (quick run, reduced sizes)" if _is_quick(path) else "")


def _provenance(data: dict[str, Any]) -> str:
    """Machine and date as one paragraph; removes the machine record from ``data``."""
    found: list[tuple[str, Any]] = []
    for key in [k for k, v in data.items() if isinstance(v, dict)]:
        if _matches(key, MACHINE_KEYS):
            found += [(k, v) for k, v in data.pop(key).items() if _is_scalar_like(v)]
    found += [
        (k, v)
        for k, v in data.items()
        if _is_scalar_like(v) and _matches(k, (*MACHINE_KEYS, *DATE_KEYS))
    ]
    if not found:
        return "*This result file does not state its machine or date.*\n\n"
    text = "; ".join(f"{k}: {_cell(v)}" for k, v in found)
    return f"**Machine and date** — {_escape(text)}\n\n"


def _render_value(name: str, value: Any, level: int) -> str:
    if isinstance(value, dict):
        return _render_dict(name, value, level)
    if _is_records(value):
        return _table(name, value)
    return _field_table(name, [(name, value)])


def _render_dict(name: str, data: dict[str, Any], level: int) -> str:
    scalars = [(k, v) for k, v in data.items() if _is_scalar_like(v)]
    for key, value in data.items():  # flat sub-records join the field table as "key.field"
        if _is_flat_dict(value):
            scalars += [(f"{key}.{k}", v) for k, v in value.items()]
    out = [_field_table(name, scalars)] if scalars else []
    for key, value in data.items():
        if _is_scalar_like(value) or _is_flat_dict(value):
            continue
        if _is_records(value):
            out.append(_table(key, value))
        elif isinstance(value, dict) and _is_records(list(value.values())):
            rows = [{"name": k, **v} for k, v in value.items()]
            out.append(_table(key, rows))
        elif isinstance(value, dict) and level < 2:
            out.append(_render_dict(key, value, level + 1))
        else:
            out.append(_field_table(key, [(key, value)]))
    return "".join(out)


def _is_scalar_like(value: Any) -> bool:
    if isinstance(value, list):
        return all(not isinstance(v, list | dict) for v in value)
    return not isinstance(value, dict)


def _is_flat_dict(value: Any) -> bool:
    return (
        isinstance(value, dict) and bool(value) and all(_is_scalar_like(v) for v in value.values())
    )


def _is_records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict) and not prefix:
            flat.update(_flatten(value, f"{key}."))
        else:
            flat[prefix + str(key)] = value
    return flat


def _table(caption: str, records: list[dict[str, Any]]) -> str:
    flat = [_flatten(r) for r in records[:MAX_ROWS]]
    columns: list[str] = []
    for row in flat:
        columns.extend(k for k in row if k not in columns)
    nested = {c for row in flat for c, v in row.items() if not _is_scalar_like(v)}
    columns = [c for c in columns if c not in nested]  # deeper structure: see the raw data
    lines = [f".. list-table:: {_escape(caption)}", "   :header-rows: 1", ""]
    lines.append(_row(columns))
    lines.extend(_row([_cell(row.get(c)) for c in columns]) for row in flat)
    note = ""
    if len(records) > MAX_ROWS:
        note = f"The first {MAX_ROWS} of {len(records)} rows are shown; see the raw data.\n\n"
    return "\n".join(lines) + "\n\n" + note


def _field_table(caption: str, items: list[tuple[str, Any]]) -> str:
    if not items:
        return ""
    lines = [f".. list-table:: {_escape(caption)}", "   :header-rows: 1", ""]
    lines.append(_row(["field", "value"]))
    lines.extend(_row([str(k), _cell(v)]) for k, v in items)
    return "\n".join(lines) + "\n\n"


def _row(cells: list[str]) -> str:
    first, *rest = [_escape(c) for c in cells]
    return "\n".join([f"   * - {first}", *(f"     - {c}" for c in rest)])


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list) and all(not isinstance(v, list | dict) for v in value):
        text = ", ".join(_cell(v) for v in value)
    elif isinstance(value, list | dict):
        text = json.dumps(value, sort_keys=True, default=str)
    else:
        text = str(value)
    text = " ".join(text.split())
    limit = MAX_TEXT if isinstance(value, str) else MAX_CELL
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _escape(text: str) -> str:
    for char in ("\\", "*", "`", "|", "_", "[", "<"):
        text = text.replace(char, "\\" + char)
    if text[:1] in tuple("-+#=:.>%~^'\"!"):  # would start a list, a title, a comment, ...
        text = "\\" + text
    return text


def _section(title: str, char: str) -> str:
    title = _escape(title)
    return f"{title}\n{char * len(title)}\n\n"


def _figure(path: Path, docs_dir: Path) -> str:
    return f".. figure:: {_rel(path, docs_dir)}\n   :width: 90%\n\n   ``{path.name}``\n\n"


def _rel(path: Path, docs_dir: Path) -> str:
    return Path(os.path.relpath(path, docs_dir)).as_posix()
