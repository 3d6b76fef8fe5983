#!/usr/bin/env python3
"""Schemathesis against the running local cloud, held to docs/openapi.yaml.

Starts `devstack up` on free ports, mints dev tokens for several roles (an org admin, a patient
of that org, a superadmin, a specialist of another org) and, for each, lets schemathesis
generate requests for every operation of the spec: valid and invalid bodies, hostile path
parameters, missing auth. The checks: no 5xx, every status and content type documented, every
body and header valid against its schema, invalid data rejected with a 4xx, auth not ignored.
Bounded: a fixed number of examples per operation and phase, a fixed seed, a time cap per role.
Prints the number of generated requests per operation; exits non-zero on any failure.
"""

import collections
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "docs" / "openapi.yaml"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
OUT = TARGET / "schemathesis"
VENV = Path(os.environ.get("EXVID_VENV", ROOT / ".venv"))

# (role, org): what each run is authenticated as.
ROLES = [
    ("admin", "org-fuzz"),
    ("patient", "org-fuzz"),
    ("superadmin", None),
    ("specialist", "org-other"),
]
EXAMPLES = int(os.environ.get("EXVID_FUZZ_EXAMPLES", "20"))
SECONDS_PER_ROLE = int(os.environ.get("EXVID_FUZZ_SECONDS", "240"))
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "ignored_auth",
    ]
)
# Not run: `unsupported_method` expects 405 with Allow for undeclared methods; API Gateway
# answers those 404 {"message":"Not Found"} (the local gateway does the same), before any
# function runs. `positive_data_acceptance` expects 2xx for every valid body, but most
# generated exercises do not exist (404) or belong to another org (404, by design).


def start_stack():
    """`devstack up` on free ports; returns (process, urls)."""
    binary = TARGET / "debug" / "devstack"
    if not binary.exists():
        sys.exit(f"error: {binary} not found (cargo build --workspace --bins)")
    proc = subprocess.Popen(
        [str(binary), "up", "--port", "0", "--quiet"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 120
    seen = []
    for line in proc.stdout:
        seen.append(line)
        m = re.search(r"devstack: urls (\{.*\})", line)
        if m:
            return proc, json.loads(m.group(1))
        if time.time() > deadline:
            break
    proc.kill()
    sys.exit("error: devstack did not start:\n" + "".join(seen[-40:]))


def token(gateway, role, org):
    query = f"role={role}" + (f"&org={org}" if org else "")
    with urllib.request.urlopen(f"{gateway}/local/token?{query}", timeout=10) as r:
        return json.load(r)["token"]


def operations():
    """(method, regex over the path, 'METHOD /template') for every operation of the spec."""
    import yaml

    spec = yaml.safe_load(SPEC.read_text())
    ops = []
    for template, item in spec["paths"].items():
        pattern = re.compile(
            "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
        )
        for method in item:
            if method in ("get", "put", "post", "delete", "patch"):
                ops.append((method.upper(), pattern, f"{method.upper()} {template}"))
    return ops


PROBES = "(probes of undeclared methods on documented paths)"


def count_requests(har_path, ops, counts):
    """Adds the requests of one HAR report to `counts` by operation."""
    from urllib.parse import urlsplit

    entries = json.loads(har_path.read_text())["log"]["entries"]
    for e in entries:
        method = e["request"]["method"]
        path = urlsplit(e["request"]["url"]).path
        name = next((n for m, p, n in ops if m == method and p.match(path)), None)
        if name is None and any(p.match(path) for _, p, _ in ops):
            name = PROBES
        counts[name or f"{method} {path} (not in the spec)"] += 1
    return len(entries)


def run_role(gateway, role, org):
    har = OUT / f"{role}.har"
    har.unlink(missing_ok=True)
    args = [
        str(VENV / "bin" / "schemathesis"),
        "--config-file",
        str(ROOT / "infra" / "schemathesis.toml"),
        "run",
        str(SPEC),
        "--url",
        gateway,
        "--header",
        f"Authorization: Bearer {token(gateway, role, org)}",
        "--checks",
        CHECKS,
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "20261202",
        "--phases",
        "examples,coverage,fuzzing",
        "--generation-database",
        "none",
        # One worker: hypothesis describing strategies from two threads trips a CPython 3.11
        # bug ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--report",
        "har",
        "--report-har-path",
        str(har),
        "--no-color",
    ]
    try:
        done = subprocess.run(
            args,
            cwd=OUT,  # its crash cache (.schemathesis/) stays under target/
            capture_output=True,
            text=True,
            timeout=SECONDS_PER_ROLE,
            # infra/schemathesis_hooks.py: the CMCD report body's serializer.
            env={**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
                 "PYTHONPATH": str(ROOT / "infra")},
        )
    except subprocess.TimeoutExpired:
        return False, f"over the {SECONDS_PER_ROLE} s cap", har
    (OUT / f"{role}.txt").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        return False, (done.stdout + done.stderr)[-6000:], har
    return True, "", har


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    proc, urls = start_stack()
    ops = operations()
    counts = collections.Counter()
    failed = []
    started = time.time()
    try:
        for role, org in ROLES:
            ok, why, har = run_role(urls["gateway"], role, org)
            n = count_requests(har, ops, counts) if har.exists() else 0
            print(f"schemathesis as {role}{'@' + org if org else ''}: {n} requests, "
                  f"{'ok' if ok else 'FAILED'}")
            if not ok:
                failed.append(f"--- {role} ---\n{why}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    for name in sorted(counts):
        print(f"  {counts[name]:5d}  {name}")
    undocumented = [n for n in counts if n.endswith("(not in the spec)")]
    total = sum(counts.values())
    print(f"schemathesis: {total} requests over {len(ops)} operations in "
          f"{time.time() - started:.0f} s, {len(failed)} failed runs")
    (TARGET / "schemathesis-counts").write_text(f"{total} {len(failed)}\n")
    if failed or undocumented or any(counts[n] == 0 for _, _, n in ops):
        print("\n".join(failed), file=sys.stderr)
        missing = [n for _, _, n in ops if counts[n] == 0]
        sys.exit(f"error: schemathesis found failures (reports in {OUT}); "
                 f"untested operations: {missing}; undocumented requests: {undocumented}")


if __name__ == "__main__":
    main()
