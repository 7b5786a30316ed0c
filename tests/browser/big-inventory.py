#!/usr/bin/env python3
"""A large inventory for the HTML report's browser test and benchmark.

    tests/browser/big-inventory.py [TAGS] > inventory.json   (default 100000)

Deterministic (no randomness, no clock): TAGS tags over 40 repositories of
one project, dated back from 2026-11-01, each family of tags a CI pipeline
makes — merge request images, branch images, commit SHAs, nightlies,
releases and their candidates, build numbers — with digests, push times
and sizes, so that tests/browser/big-policy.yml deletes some of each and
keeps the rest for every reason a rule can have.
"""
import hashlib
import json
import sys
from datetime import datetime, timedelta, timezone

NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)
REPOSITORIES = 40
FAMILIES = ["mr", "branch", "sha", "nightly", "release", "rc", "build"]


def digest(text):
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def tag(repository, index):
    """The index-th tag of a repository: its name, age in hours, size."""
    family = FAMILIES[index % len(FAMILIES)]
    n = index // len(FAMILIES)
    h = int(hashlib.sha256(f"{repository}/{index}".encode()).hexdigest()[:8], 16)
    age = (n * 7 + h % 97) % (24 * 400)  # up to ~400 days
    size = (40 + h % 400) * 1024 * 1024 + h % 4096
    if family == "mr":
        name = f"mr-{n}-{h % 0xFFFFFF:06x}"
    elif family == "branch":
        name = f"feature-{n % 500}-{h:08x}"
    elif family == "sha":
        name = f"{h:08x}{n:04x}"[:8] + f"{n:x}"
    elif family == "nightly":
        day = NOW - timedelta(days=n % 3000)
        name = f"nightly-{day:%Y%m%d}-{n // 3000}"
        age = 24 * (n % 3000)
    elif family == "release":
        name = f"v{n // 100}.{n % 100 // 10}.{n % 10}"
    elif family == "rc":
        name = f"v{n // 100}.{n % 100 // 10}.{n % 10}-rc.1"
    else:
        name = f"build-{n:06d}"
    return {
        "name": name,
        "digest": digest(f"{repository}:{name}"),
        "pushed_at": (NOW - timedelta(hours=age)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "size_bytes": size,
    }


def main():
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    repositories = []
    # A few large repositories and a long tail, as in a real group.
    weights = [1 / (r + 1) ** 0.8 for r in range(REPOSITORIES)]
    counts = [int(total * w / sum(weights)) for w in weights]
    counts[0] += total - sum(counts)
    for r in range(REPOSITORIES):
        path = "acme/big" if r == 0 else f"acme/big/service-{r:02d}"
        count = counts[r]
        tags = [tag(path, i) for i in range(count)]
        if tags:
            tags[0] = {"name": "latest", "digest": tags[1]["digest"] if len(tags) > 1 else digest(path)}
        # Names are unique within a repository (the inventory requires it).
        seen, unique = set(), []
        for t in tags:
            while t["name"] in seen:
                t["name"] += "x"
            seen.add(t["name"])
            unique.append(t)
        repositories.append({"path": path, "id": r + 1, "tags": unique})
    json.dump({"repositories": repositories}, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


main()
