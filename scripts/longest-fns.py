#!/usr/bin/env python3
"""Longest non-test functions in src/ at a git commit: lines from `fn` to the
closing brace at the same indentation. Usage: python3 scripts/longest-fns.py . COMMIT [N]
(used for the architecture issue's closing note: longest functions before/after)"""
import re, subprocess, sys
repo, commit = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 8
files = subprocess.run(["git", "-C", repo, "ls-tree", "-r", "--name-only", commit, "src"],
                       capture_output=True, text=True, check=True).stdout.split()
fn_re = re.compile(r'^(\s*)(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)')
found = []
for f in files:
    if not f.endswith(".rs") or f.endswith("/tests.rs"):
        continue
    lines = subprocess.run(["git", "-C", repo, "show", f"{commit}:{f}"],
                           capture_output=True, text=True, check=True).stdout.split("\n")
    in_test = False
    for i, line in enumerate(lines):
        if line.startswith("#[cfg(test)]"):
            in_test = True  # test module runs to the end of the file in this codebase
        m = fn_re.match(line)
        if not m or in_test:
            continue
        indent = m.group(1)
        if line.rstrip().endswith(";"):
            continue  # trait method declaration
        for j in range(i, len(lines)):
            if lines[j] == indent + "}" or (j == i and line.rstrip().endswith("}")):
                found.append((j - i + 1, f, m.group(7), i + 1))
                break
found.sort(reverse=True)
for length, f, name, line in found[:n]:
    print(f"{length:4}  {f}:{line}  {name}")
