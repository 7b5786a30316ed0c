#!/usr/bin/env python3
"""Runs the examples of the docs as written, against the playground.

    scripts/doc-examples.py --checkout DIR FILE.md...   (scripts/check-examples.sh sets it up)

For every fenced block of each file:

- `sh`, `shell`, `bash`: each command (a line, with its `\\` continuations) runs
  with bash in DIR, a scratch copy of a checkout, and must exit 0. A block right
  after it without a language is what the last command prints.
- `console`: `$ ` lines are commands, the lines under them what they print.
- `yaml` with a top-level `rules:` key is a policy: `registry-cleanup check` must
  accept it.

Printed output is compared line by line, `elapsed:` lines aside; a line `…` in the
expected output stands for any lines. Not run: lines that build, install or
export (`cargo …`, `export …`, `bash .ci/run`), comments, and blocks right after
`<!-- not live: REASON -->`.

In docs/policy.md each worked example's table is checked against the live run of
its section (`registry-cleanup run --dry-run --policy examples/…`): every
tag the table says is **deleted** is in the run's report as deleted, every other
one is not; and every examples/policies/*.yml must appear verbatim in that file.
"""

import argparse
import json
import pathlib
import re
import subprocess
import sys
import tempfile

SKIP_PREFIXES = ("cargo ", "export ", "bash .ci/run", "#")
NOT_LIVE = re.compile(r"<!--\s*not live:")


class Block:
    def __init__(self, file, line, info, text, section, not_live):
        self.file, self.line, self.info, self.text = file, line, info, text
        self.section, self.not_live = section, not_live


def blocks_of(path):
    """The fenced blocks of a Markdown file, with the `###`/`##` section each is in."""
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks, section, i = [], "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#") and not line.startswith("#!"):
            section = line.lstrip("#").strip()
        if line.startswith("```"):
            info = line[3:].strip()
            start = i
            body = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            previous = next((l for l in reversed(lines[:start]) if l.strip()), "")
            blocks.append(Block(path, start + 1, info, body, section, bool(NOT_LIVE.search(previous))))
        i += 1
    return blocks


def commands_of(block):
    """(command, expected output lines or None) of a sh or console block."""
    commands = []
    if block.info == "console":
        current = None
        for line in block.text:
            if line.startswith("$ "):
                current = [line[2:], []]
                commands.append(current)
            elif current and current[0].endswith("\\"):
                current[0] = current[0][:-1] + " " + line.strip()
            elif current:
                current[1].append(line)
        return [(command, expected) for command, expected in commands]
    joined = []
    for line in block.text:
        if joined and joined[-1].endswith("\\"):
            joined[-1] = joined[-1][:-1] + " " + line.strip()
        else:
            joined.append(line)
    for line in joined:
        stripped = line.strip()
        if not stripped or stripped.startswith(SKIP_PREFIXES):
            continue
        commands.append((stripped, None))
    return commands


def matches(expected, actual):
    """Whether `actual` lines are `expected`, `…` standing for any lines."""
    expected = [l for l in expected if not l.startswith("elapsed:")]
    actual = [l for l in actual if not l.startswith("elapsed:")]

    def match(e, a):
        if not e:
            return not a
        if e[0].strip() in ("…", "..."):
            return any(match(e[1:], a[k:]) for k in range(len(a) + 1))
        return bool(a) and a[0].rstrip() == e[0].rstrip() and match(e[1:], a[1:])

    return match(expected, actual)


def run(command, checkout):
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], cwd=checkout, capture_output=True, text=True, timeout=300
    )


def table_outcomes(path, section):
    """{tag: deleted?} from the Markdown table(s) of a section of docs/policy.md."""
    outcomes, current = {}, ""
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.startswith("#"):
            current = line.lstrip("#").strip()
        if current != section or not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        deleted = "**deleted**" in cells[-1]
        for tag in re.findall(r"`([^`]+)`", cells[0]):
            if "<" not in tag:
                outcomes[tag] = deleted
    return outcomes


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkout", required=True)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    root = pathlib.Path(__file__).resolve().parent.parent
    failures, ran, skipped, tables_checked = [], 0, [], 0
    policy_texts = []
    for name in args.files:
        path = root / name
        blocks = blocks_of(path)
        for n, block in enumerate(blocks):
            where = f"{name}:{block.line}"
            if block.not_live:
                skipped.append(where)
                continue
            if block.info == "yaml":
                text = "\n".join(block.text) + "\n"
                policy_texts.append(text)
                if re.search(r"^rules:", text, re.M):
                    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
                        f.write(text)
                    result = run(f"registry-cleanup check --policy {f.name}", args.checkout)
                    ran += 1
                    if result.returncode != 0:
                        failures.append(f"{where}: the policy is refused by check: {result.stderr.strip()}")
                continue
            if block.info not in ("sh", "shell", "bash", "console"):
                continue
            commands = commands_of(block)
            # A plain block right after a sh block: what its last command prints.
            following = blocks[n + 1] if n + 1 < len(blocks) else None
            if block.info != "console" and commands and following and following.info == "" \
                    and following.line - (block.line + len(block.text) + 1) <= 2:
                commands[-1] = (commands[-1][0], following.text)
            for command, expected in commands:
                ran += 1
                result = run(command, args.checkout)
                if result.returncode != 0:
                    failures.append(f"{where}: `{command}` exited {result.returncode}:\n{result.stdout}{result.stderr}")
                    continue
                if expected is not None and not matches(expected, result.stdout.split("\n")[:-1] if result.stdout.endswith("\n") else result.stdout.split("\n")):
                    failures.append(f"{where}: `{command}` printed\n{result.stdout}\nnot what the docs show:\n" + "\n".join(expected))
                live = re.search(r"registry-cleanup run --dry-run --policy (examples/\S+\.yml)", command)
                if live and name.endswith("policy.md") and "|" not in command:
                    report = pathlib.Path(args.checkout) / "example-report.json"
                    again = run(f"{command} --report {report}", args.checkout)
                    if again.returncode != 0:
                        failures.append(f"{where}: `{command} --report …` failed: {again.stderr}")
                        continue
                    deleted = {d["tag"] for r in json.loads(report.read_text())["repositories"] for d in r["deleted"]}
                    table = table_outcomes(path, block.section)
                    tables_checked += bool(table)
                    for tag, is_deleted in table.items():
                        if is_deleted != (tag in deleted):
                            failures.append(
                                f"{where}: {tag}: the table says {'deleted' if is_deleted else 'kept'}, "
                                f"the live run {'deletes' if tag in deleted else 'keeps'} it")
    if "docs/policy.md" in args.files and tables_checked < 6:
        failures.append(f"only {tables_checked} worked examples of docs/policy.md checked against their tables")
    for policy in sorted((root / "examples" / "policies").glob("*.yml")):
        if policy.read_text(encoding="utf-8") not in policy_texts:
            failures.append(f"{policy.relative_to(root)} is not word for word a policy block of the docs")
    for failure in failures:
        print(f"doc-examples: FAIL: {failure}", file=sys.stderr)
    print(f"doc-examples: {ran} examples run, {tables_checked} tables checked, {len(failures)} failed; "
          f"not live: {', '.join(skipped) or 'none'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
