#!/usr/bin/env python3
"""Helpers for scripts/component-test.sh: the parts of GitLab's input handling that
check-jsonschema and gitlab-ci-local 4.70.0 do not cover.

    ci_inputs.py render TEMPLATE [INPUTS_JSON]
        Prints the template's job document as JSON, with `$[[ inputs.x ]]` replaced
        the way GitLab does (a whole-value reference keeps the input's type; inside a
        longer string an array becomes `["a", "b"]`), so that check-jsonschema can
        validate it. Unknown, mistyped or out-of-options inputs are errors.

    ci_inputs.py check-includes TEMPLATES_DIR FILE...
        Checks the `inputs:` of every `include:` of these templates (`local:
        templates/x.yml` or `component: .../x@ref`) in YAML files and in the ```yaml
        blocks of Markdown files: every name must exist in the template's spec, with
        a value of the declared type and among its `options`. GitLab rejects a
        misspelt input name at pipeline creation; gitlab-ci-local 4.70.0 ignores it,
        and `include: component:` cannot run locally at all.
"""

import json
import pathlib
import re
import sys

import yaml

BLOCK = re.compile(r"\$\[\[\s*inputs\.([\w-]+)\s*(\|[^\]]*)?\]\]")
PY_TYPES = {"string": str, "number": (int, float), "boolean": bool, "array": list}


def load(template):
    docs = list(yaml.safe_load_all(pathlib.Path(template).read_text(encoding="utf-8")))
    if len(docs) != 2 or not isinstance(docs[0], dict) or "spec" not in docs[0]:
        raise SystemExit(f"{template}: want a `spec:` header, `---`, then the jobs")
    return docs[0]["spec"].get("inputs") or {}, docs[1]


def problems_with(spec, given, where):
    """Why `given` (name -> value) is not acceptable for `spec`, as a list of strings."""
    out = []
    for name, value in given.items():
        if name not in spec:
            close = [n for n in spec if n.replace("_", "") == name.replace("_", "").replace("-", "")]
            hint = f" (did you mean `{close[0]}`?)" if close else f"; known: {', '.join(spec)}"
            out.append(f"{where}: unknown input `{name}`{hint}")
            continue
        field = spec[name] or {}
        kind = field.get("type", "string")
        # GitLab expands CI/CD variables in include inputs, so "$VAR" fits any type.
        if isinstance(value, str) and value.startswith("$") and kind != "string":
            continue
        ok = isinstance(value, PY_TYPES[kind]) and not (kind == "number" and isinstance(value, bool))
        if not ok:
            out.append(f"{where}: input `{name}` must be a {kind}, got {value!r}")
        elif "options" in field and value not in field["options"]:
            out.append(f"{where}: input `{name}`: {value!r} is not one of {field['options']}")
    for name, field in spec.items():
        if "default" not in (field or {}) and name not in given:
            out.append(f"{where}: required input `{name}` not given")
    return out


def interpolate(node, values):
    if isinstance(node, dict):
        return {interpolate(k, values): interpolate(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, values) for v in node]
    if not isinstance(node, str):
        return node

    def value_of(match):
        name, functions = match.group(1), match.group(2)
        if name not in values:
            raise SystemExit(f"unknown interpolation key `{name}`")
        if functions:
            raise SystemExit(f"interpolation functions are not emulated here: {match.group(0)}")
        return values[name]

    whole = BLOCK.fullmatch(node)
    if whole:
        return value_of(whole)

    def text(match):
        value = value_of(match)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (list, dict)):
            return json.dumps(value, separators=(", ", ": "))
        return str(value)

    return BLOCK.sub(text, node)


def render(template, inputs_json="{}"):
    spec, jobs = load(template)
    given = json.loads(inputs_json)
    problems = problems_with(spec, given, template)
    if problems:
        raise SystemExit("\n".join(problems))
    values = {name: (field or {}).get("default") for name, field in spec.items()}
    values.update(given)
    json.dump(interpolate(jobs, values), sys.stdout, indent=1)
    print()


def yaml_documents(path):
    text = pathlib.Path(path).read_text(encoding="utf-8")
    if path.endswith(".md"):
        for i, block in enumerate(re.findall(r"```ya?ml\n(.*?)```", text, re.S)):
            yield f"{path} (yaml block {i + 1})", block
    else:
        yield path, text


def check_includes(templates_dir, files):
    specs = {p.stem: load(p)[0] for p in pathlib.Path(templates_dir).glob("*.yml")}
    problems, checked = [], 0
    for path in files:
        for where, text in yaml_documents(path):
            try:
                docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
            except yaml.YAMLError as e:
                problems.append(f"{where}: not YAML: {e}")
                continue
            for doc in docs:
                includes = doc.get("include") or []
                for inc in includes if isinstance(includes, list) else [includes]:
                    if not isinstance(inc, dict):
                        continue
                    ref = inc.get("component") or inc.get("local") or ""
                    m = re.search(r"/([\w-]+)@[^/]+$", ref) if "component" in inc else re.search(
                        r"(?:^|/)templates/([\w-]+)\.yml$", ref
                    )
                    if not m or m.group(1) not in specs:
                        continue
                    checked += 1
                    problems += problems_with(specs[m.group(1)], inc.get("inputs") or {}, f"{where}: {ref}")
    for p in problems:
        print(p, file=sys.stderr)
    print(f"ci_inputs: {checked} include(s) of {', '.join(sorted(specs))} checked, {len(problems)} problem(s)",
          file=sys.stderr)
    return 1 if problems else 0


def main(argv):
    if len(argv) >= 2 and argv[0] == "render" and len(argv) <= 3:
        render(*argv[1:])
        return 0
    if len(argv) >= 3 and argv[0] == "check-includes":
        return check_includes(argv[1], argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
