#!/usr/bin/env python3
"""Keeps the components' inputs tables in the docs in step with templates/*.yml.

    scripts/gen-inputs-table.py           # rewrite every file that has the markers
    scripts/gen-inputs-table.py --check   # exit 1 if any of them is out of date
    scripts/gen-inputs-table.py --print   # print the tables

The tables go between `<!-- inputs:start -->` and `<!-- inputs:end -->` in README.md
and in docs/*.md, in every file that contains both markers.
"""

import argparse
import difflib
import json
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
START, END = "<!-- inputs:start -->", "<!-- inputs:end -->"
TYPES = ("string", "number", "boolean", "array")


def load_spec(path):
    """The `spec` header (first YAML document) of a component template."""
    with path.open(encoding="utf-8") as f:
        header = next(yaml.safe_load_all(f), None)
    if not isinstance(header, dict) or not isinstance(header.get("spec"), dict):
        raise SystemExit(f"{path}: no `spec:` header document")
    spec = header["spec"]
    inputs = spec.get("inputs") or {}
    for name, field in inputs.items():
        field = field or {}
        if field.get("type", "string") not in TYPES:
            raise SystemExit(f"{path}: input {name}: unknown type {field.get('type')!r}")
        if not field.get("description"):
            raise SystemExit(f"{path}: input {name} has no description")
    return spec


def cell(text):
    """Text fit for one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(value):
    text = value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))
    if text == "":
        return '`""`'
    tick = "``" if "`" in text else "`"
    pad = " " if tick == "``" else ""
    return f"{tick}{pad}{cell(text)}{pad}{tick}"


def table(name, spec):
    lines = [f"### `{name}`", ""]
    if spec.get("description"):
        lines += [" ".join(spec["description"].split()), ""]
    lines += ["| Input | Type | Default | Description |", "|---|---|---|---|"]
    for input_name, field in (spec.get("inputs") or {}).items():
        field = field or {}
        kind = field.get("type", "string")
        if "options" in field:
            kind += ": " + " \\| ".join(code(o) for o in field["options"])
        default = code(field["default"]) if "default" in field else "**required**"
        lines.append(f"| `{input_name}` | {kind} | {default} | {cell(field.get('description', ''))} |")
    return "\n".join(lines)


def tables(templates):
    parts = []
    for path in templates:
        name = path.parent.name if path.name == "template.yml" else path.stem
        parts.append(table(name, load_spec(path)))
    return "\n\n".join(parts)


def replace_between_markers(text, generated, path):
    start, end = text.find(START), text.find(END)
    if start < 0 or end < 0:
        return None
    if end < start:
        raise SystemExit(f"{path}: {END} comes before {START}")
    return text[: start + len(START)] + "\n" + generated + "\n" + text[end:]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if a file is out of date")
    mode.add_argument("--print", action="store_true", help="print the tables to stdout")
    args = parser.parse_args()

    templates = sorted((ROOT / "templates").glob("*.yml")) + sorted((ROOT / "templates").glob("*/template.yml"))
    if not templates:
        raise SystemExit("no templates/*.yml")
    generated = tables(templates)
    if args.print:
        print(generated)
        return 0

    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    stale, seen = [], 0
    for path in docs:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        updated = replace_between_markers(text, generated, path)
        if updated is None:
            continue
        seen += 1
        rel = path.relative_to(ROOT)
        if updated == text:
            continue
        stale.append(rel)
        if args.check:
            sys.stdout.writelines(
                difflib.unified_diff(
                    text.splitlines(True), updated.splitlines(True), f"a/{rel}", f"b/{rel}"
                )
            )
        else:
            path.write_text(updated, encoding="utf-8")
            print(f"updated {rel}")
    if seen == 0:
        print(f"no file contains {START} ... {END}", file=sys.stderr)
        return 1
    if args.check and stale:
        print(
            "inputs tables out of date in: " + ", ".join(map(str, stale))
            + "\nrun scripts/gen-inputs-table.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
