"""docs/openapi.yaml is a valid OpenAPI 3.1 document whose paths and methods are exactly the
routes template.yaml deploys, and whose webhooks are the event types notify emits."""
import os
import re
import sys

import yaml
from openapi_spec_validator import validate

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class Loader(yaml.SafeLoader):
    pass


# CloudFormation's short-form tags (!Ref, !Sub, …) read as plain values.
Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def bad_examples(spec):
    """Every schema's `example` is valid against that schema (JSON Schema 2020-12)."""
    from jsonschema import Draft202012Validator

    failures = []
    for name, schema in spec["components"]["schemas"].items():
        if "example" not in schema:
            continue
        root = {**schema, "components": spec["components"]}
        for error in Draft202012Validator(root).iter_errors(schema["example"]):
            failures.append(f"example of {name}: {error.message} at {list(error.path)}")
    return failures


def main():
    with open(os.path.join(ROOT, "docs", "openapi.yaml"), encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    validate(spec)
    with open(os.path.join(ROOT, "template.yaml"), encoding="utf-8") as f:
        template = yaml.load(f, Loader=Loader)
    deployed = set()
    for resource in template["Resources"].values():
        for event in (resource.get("Properties") or {}).get("Events", {}).values():
            if event.get("Type") == "HttpApi":
                p = event["Properties"]
                deployed.add((p["Method"].lower(), p["Path"]))
    documented = {
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    failures = []
    if documented != deployed:
        failures.append(
            f"spec and template differ: only in the spec {sorted(documented - deployed)}, "
            f"only in the template {sorted(deployed - documented)}"
        )
    with open(os.path.join(ROOT, "shared", "src", "domain", "video_event.rs"), encoding="utf-8") as f:
        emitted = set(re.findall(r'"((?:video|playback)\.[a-z_]+)"', f.read()))
    if set(spec.get("webhooks", {})) != emitted:
        failures.append(f"webhooks {sorted(spec.get('webhooks', {}))} != emitted {sorted(emitted)}")
    failures += bad_examples(spec)
    if failures:
        print("openapi check failed:", *failures, sep="\n  - ", file=sys.stderr)
        sys.exit(1)
    print(f"openapi ok: valid 3.1, {len(documented)} operations = the template's routes, {len(emitted)} webhooks")


if __name__ == "__main__":
    main()
