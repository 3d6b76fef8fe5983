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

# (role, org, provider): what each run is authenticated as, and which provider's intake
# answers it (the local gateway's X-Exvid-Provider header; in AWS the deployment's). The AWS
# run is the one whose stateful phase follows the intake answer's links into the multipart
# routes with real upload ids.
ROLES = [
    ("admin", "org-fuzz", "bunny_stream"),
    ("admin", "org-fuzz", "aws_mediaconvert"),
    ("patient", "org-fuzz", "bunny_stream"),
    # A superadmin with an org: one without must name the scope (400 scope-required, a rule
    # about the caller that tests/tests/intake_api.rs covers), which would read as schema-valid
    # data refused.
    ("superadmin", "org-fuzz", "aws_mediaconvert"),
    ("specialist", "org-other", "bunny_stream"),
]
EXAMPLES = int(os.environ.get("EXVID_FUZZ_EXAMPLES", "20"))
SECONDS_PER_ROLE = int(os.environ.get("EXVID_FUZZ_SECONDS", "240"))
# Every check schemathesis has but one: `unsupported_method` expects 405 with Allow for
# undeclared methods; API Gateway answers those 404 {"message":"Not Found"} (the local gateway
# does the same), before any function runs. `max_response_time` is on only with a limit (none
# set). `positive_data_acceptance` counts some 4xx as acceptance: infra/schemathesis.toml.
EXCLUDED_CHECKS = "unsupported_method"


def start_stack():
    """`devstack up` on free ports; returns (process, urls)."""
    binary = TARGET / "debug" / "devstack"
    if not binary.exists():
        sys.exit(f"error: {binary} not found (cargo build --workspace --bins)")
    proc = subprocess.Popen(
        # Every AWS-path video intake is multipart unless the body says `multipart: false`, so the
        # stateful phase follows most intake answers into the multipart routes.
        [str(binary), "up", "--port", "0", "--quiet", "--multipart-threshold", "1"],
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


def count_requests(har_path, ops, counts, real_ids=None):
    """Adds the requests of one HAR report to `counts` by operation, and to `real_ids` those
    that named an upload id an intake answer (201) of the same run handed out: the stateful
    phase following the spec's links, not a made-up id."""
    from urllib.parse import urlsplit

    entries = json.loads(har_path.read_text())["log"]["entries"]
    issued = set()
    for e in entries:
        if e["request"]["method"] == "POST" and e["response"]["status"] == 201:
            try:
                issued.add(json.loads(e["response"]["content"].get("text") or "{}").get("upload_id"))
            except (ValueError, AttributeError):
                pass
    for e in entries:
        method = e["request"]["method"]
        path = urlsplit(e["request"]["url"]).path
        name = next((n for m, p, n in ops if m == method and p.match(path)), None)
        if name is None and any(p.match(path) for _, p, _ in ops):
            name = PROBES
        counts[name or f"{method} {path} (not in the spec)"] += 1
        m = re.search(r"/uploads/([^/]+)", path)
        if real_ids is not None and name and m and m.group(1) in issued:
            real_ids[name] += 1
    return len(entries)


def run_role(gateway, role, org, provider):
    name = f"{role}-{provider}"
    har = OUT / f"{name}.har"
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
        "--header",
        f"X-Exvid-Provider: {provider}",
        "--checks",
        "all",
        "--exclude-checks",
        EXCLUDED_CHECKS,
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "20261202",
        "--phases",
        "examples,coverage,fuzzing,stateful",
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
    (OUT / f"{name}.txt").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        return False, (done.stdout + done.stderr)[-6000:], har
    return True, "", har


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    proc, urls = start_stack()
    ops = operations()
    counts = collections.Counter()
    answered = collections.Counter()
    failed = []
    started = time.time()
    try:
        for role, org, provider in ROLES:
            ok, why, har = run_role(urls["gateway"], role, org, provider)
            n = count_requests(har, ops, counts, answered) if har.exists() else 0
            print(f"schemathesis as {role}{'@' + org if org else ''} ({provider}): {n} requests, "
                  f"{'ok' if ok else 'FAILED'}")
            if not ok:
                failed.append(f"--- {role} ({provider}) ---\n{why}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    print("  requests  real upload id  operation")
    for name in sorted(counts):
        print(f"  {counts[name]:8d} {answered[name]:14d}  {name}")
    undocumented = [n for n in counts if n.endswith("(not in the spec)")]
    total = sum(counts.values())
    print(f"schemathesis: {total} requests over {len(ops)} operations in "
          f"{time.time() - started:.0f} s, {len(failed)} failed runs")
    (TARGET / "schemathesis-counts").write_text(f"{total} {len(failed)}\n")
    # The stateful phase must reach the multipart routes with the intake answer's upload ids.
    unreached = [n for _, _, n in ops if "/uploads/{upload_id}" in n and answered[n] == 0]
    if unreached:
        failed.append(f"never reached with a real upload id: {unreached}")
    if failed or undocumented or any(counts[n] == 0 for _, _, n in ops):
        print("\n".join(failed), file=sys.stderr)
        missing = [n for _, _, n in ops if counts[n] == 0]
        sys.exit(f"error: schemathesis found failures (reports in {OUT}); "
                 f"untested operations: {missing}; undocumented requests: {undocumented}")


if __name__ == "__main__":
    main()
