#!/usr/bin/env python3
"""The link checker's own test: on a copy of README.md and docs/, it passes; a planted broken
file link, a planted broken anchor (in README.md and in a docs file) each make it fail naming
the line."""
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CHECK = os.path.join(ROOT, "infra", "check_links.py")


def run(root):
    return subprocess.run([sys.executable, CHECK, root], capture_output=True, text=True)


def copy():
    d = tempfile.mkdtemp(prefix="exvid-links-")
    shutil.copy(os.path.join(ROOT, "README.md"), d)
    shutil.copytree(os.path.join(ROOT, "docs"), os.path.join(d, "docs"))
    # Targets outside README and docs that they link to (the checker only needs them to exist).
    for rel in ("infra", "shared", "functions", "tests", "template.yaml", "samconfig.toml", "Makefile", "fuzz"):
        src = os.path.join(ROOT, rel)
        if os.path.exists(src):
            os.symlink(src, os.path.join(d, rel))
    return d


def plant(root, path, text):
    with open(os.path.join(root, path), "a", encoding="utf-8") as f:
        f.write("\n" + text + "\n")


def main():
    failures = []
    d = copy()
    if run(d).returncode != 0:
        failures.append("the unmodified copy does not pass:\n" + run(d).stdout)
    cases = [
        ("README.md", "See [nowhere](docs/no-such-topic.md).", "no such file"),
        ("README.md", "See [the API](docs/api.md#no-such-heading).", "no heading #no-such-heading"),
        ("docs/events.md", "Back to [the top](#no-such-section).", "no heading #no-such-section"),
        ("docs/decisions/README.md", "See [deploy](../deploy.md#nope).", "no heading #nope"),
    ]
    for path, text, expected in cases:
        d = copy()
        plant(d, path, text)
        r = run(d)
        if r.returncode == 0 or expected not in r.stdout or path not in r.stdout:
            failures.append(f"planted in {path} ({text}) not reported: {r.stdout}{r.stderr}")
    if failures:
        for f in failures:
            print(f"link checker self-test failed: {f}")
        sys.exit(1)
    print(f"link checker self-test ok: {len(cases)} planted broken links reported")


if __name__ == "__main__":
    main()
