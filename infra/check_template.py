"""Checks template.yaml offline: cfn-lint, the SAM translator, cfn-lint on the translated
CloudFormation (cfn-lint >= 1.54 no longer runs the SAM transform, so circular dependencies only
show there), and the project's own rules on the result: private encrypted storage, least
privilege, no plaintext secrets, JWT on every API route.

Usage: python infra/check_template.py [template.yaml [samconfig.toml]]   (exit 0 = all checks passed)
"""
import json
import os
import subprocess
import sys
import tempfile

# The translator needs a region to build ARNs; nothing is called.
os.environ.setdefault("AWS_DEFAULT_REGION", "eu-central-1")

from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.dirname(sys.executable)

# Parameters without defaults get plausible values so the translator can resolve them.
PARAMETERS = {
    "JwtIssuer": "https://auth.example.com/",
    "JwtAudience": "exvid-api",
    "BunnyStreamCdnHostname": "vz-example.b-cdn.net",
    "BunnyStreamLibraryId": "133",
}

# What each function may do: (actions, resource logical ids it may touch).
LEAST_PRIVILEGE = {
    "PlaybackFunction": {"dynamodb:GetItem"},
    "UploadIntakeFunction": {
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem",
        "s3:PutObject", "s3:PutObjectTagging", "s3:DeleteObject", "s3:DeleteObjectVersion",
        "s3:ListBucketVersions", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload",
        # Caption tracks next to the HLS output, the master playlist rewritten to list them.
        "s3:GetObject",
    },
    "TranscodeStartFunction": {
        "dynamodb:GetItem", "dynamodb:PutItem", "s3:GetObject", "s3:ListBucket", "s3:DeleteObject",
        "s3:DeleteObjectVersion", "s3:ListBucketVersions",
        "mediaconvert:CreateJob", "iam:PassRole",
        "sqs:SendMessage",  # the on-failure destination SAM wires for async invokes
    },
    "BunnyWebhookFunction": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"},
    "TranscodeCompleteFunction": {
        "dynamodb:GetItem", "dynamodb:PutItem", "s3:DeleteObject", "s3:DeleteObjectVersion",
        "s3:ListBucketVersions", "sqs:SendMessage",
        # A replacement that keeps its captions: read from the old rendition, written for the new.
        "s3:GetObject", "s3:PutObject",
    },
    # Stream and queue reads come with the event sources' execution policies (below).
    "NotifyFunction": {"events:PutEvents", "sqs:SendMessage", "sqs:ChangeMessageVisibility"},
    "ReconcileFunction": {
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query",
        "mediaconvert:GetJob", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:ListBucketVersions",
        "s3:AbortMultipartUpload",
        # An original whose Object Created event was lost: started as transcode-start would.
        "s3:GetObject", "s3:ListBucket", "mediaconvert:CreateJob", "iam:PassRole",
    },
    "CdnKeySyncFunction": {"cloudfront-keyvaluestore:DescribeKeyValueStore", "cloudfront-keyvaluestore:PutKey"},
    # Session items only (LeadingKeys PLAYBACK#*, checked below) and the two session indexes.
    "PlaybackQualityFunction": {
        "dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query",
    },
}

# Managed policies SAM attaches for an event source, allowed only on the function that has it.
EVENT_SOURCE_POLICIES = {
    "NotifyFunction": ("AWSLambdaDynamoDBExecutionRole", "AWSLambdaSQSQueueExecutionRole"),
}

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def cfn_lint(path, label, ignore=()):
    args = [os.path.join(BIN, "cfn-lint")]
    if ignore:
        args += ["--ignore-checks", *ignore]
    result = subprocess.run([*args, "--", path], capture_output=True, text=True)
    check(result.returncode == 0, f"cfn-lint ({label}):\n{result.stdout}{result.stderr}")


def resources_of(template, kind):
    return {
        name: r for name, r in template["Resources"].items() if r.get("Type") == kind
    }


def as_list(value):
    return value if isinstance(value, list) else [value]


def is_dynamic_reference(value):
    text = json.dumps(value)
    return "{{resolve:secretsmanager:" in text or "{{resolve:ssm-secure:" in text


def check_sam_source(sam):
    for name, fn in resources_of(sam, "AWS::Serverless::Function").items():
        meta = fn.get("Metadata", {})
        check(meta.get("BuildMethod") == "rust-cargolambda", f"{name}: not built with cargo-lambda")
        # SAM's cargo-lambda builder reads the binary from BuildProperties only; a `Binary`
        # straight under Metadata is ignored (the build then guesses).
        binary = (meta.get("BuildProperties") or {}).get("Binary")
        check(
            isinstance(binary, str)
            and os.path.isfile(os.path.join(ROOT, "functions", binary, "Cargo.toml")),
            f"{name}: Metadata.BuildProperties.Binary must name a package under functions/",
        )
        check("Binary" not in meta, f"{name}: Metadata.Binary is ignored by SAM; use BuildProperties.Binary")
        variables = fn["Properties"].get("Environment", {}).get("Variables", {})
        for var, value in variables.items():
            if "KEY" in var or "SECRET" in var:
                check(
                    is_dynamic_reference(value),
                    f"{name}: {var} must come from a Secrets Manager/SSM dynamic reference",
                )


def check_public_endpoints(sam):
    """Only the Bunny webhook is public (a function URL without IAM auth, its signature being
    the authentication); it has reserved concurrency and its URL is an output."""
    public = []
    for name, fn in resources_of(sam, "AWS::Serverless::Function").items():
        url = fn["Properties"].get("FunctionUrlConfig")
        if url is None:
            continue
        public.append(name)
        check(url.get("AuthType") == "NONE", f"{name}: webhook URL AuthType NONE (signature is the auth)")
        check("ReservedConcurrentExecutions" in fn["Properties"], f"{name}: public URL needs reserved concurrency")
        variables = fn["Properties"].get("Environment", {}).get("Variables", {})
        check("BUNNY_WEBHOOK_SIGNING_KEY" in variables, f"{name}: verifies signatures")
    check(public == ["BunnyWebhookFunction"], f"only the Bunny webhook has a function URL, not {public}")
    outputs = json.dumps(sam.get("Outputs", {}))
    check("BunnyWebhookFunctionUrl.FunctionUrl" in outputs, "the webhook URL is an output")


def check_edge_and_events(sam):
    """The deployed CloudFront Function is the tested file; job events are this stack's only;
    PassRole names the MediaConvert role and nothing else."""
    with open(os.path.join(HERE, "cloudfront", "verify-token.js"), encoding="utf-8") as f:
        tested = f.read()
    functions = resources_of(sam, "AWS::CloudFront::Function")
    check(len(functions) == 1, "one CloudFront Function")
    for name, fn in functions.items():
        code = fn["Properties"].get("FunctionCode", "")
        check(code.strip() == tested.strip(), f"{name}: FunctionCode differs from infra/cloudfront/verify-token.js")
        check(fn["Properties"]["FunctionConfig"].get("Runtime") == "cloudfront-js-2.0", f"{name}: cloudfront-js-2.0")
    served = ("/hls/*", "/mp4/*", "/poster/*", "/thumbnail/*", "/instructions/*")
    for name, policy in resources_of(sam, "AWS::S3::BucketPolicy").items():
        for st in policy["Properties"]["PolicyDocument"]["Statement"]:
            if st.get("Effect") == "Allow" and "cloudfront" in json.dumps(st.get("Principal")):
                for res in as_list(st.get("Resource", [])):
                    text = res.get("Fn::Sub", json.dumps(res)) if isinstance(res, dict) else str(res)
                    check(
                        any(text.endswith(s) for s in served),
                        f"{name}: CloudFront may read only output prefixes, not {text}",
                    )
    for name, fn in resources_of(sam, "AWS::Serverless::Function").items():
        for event in fn["Properties"].get("Events", {}).values():
            if event.get("Type") != "EventBridgeRule":
                continue
            props = event["Properties"]
            check("DeadLetterConfig" in props and "RetryPolicy" in props, f"{name}: rule has retries and a DLQ")
            pattern = props["Pattern"]
            if "aws.mediaconvert" in pattern.get("source", []):
                stack = pattern.get("detail", {}).get("userMetadata", {}).get("exvid_stack")
                check(stack == [{"Ref": "AWS::StackName"}], f"{name}: MediaConvert rule filtered to this stack")
        for policy in fn["Properties"].get("Policies", []):
            for st in as_list(policy.get("Statement", [])) if isinstance(policy, dict) else []:
                if "iam:PassRole" in as_list(st.get("Action", [])):
                    check(st.get("Resource") == {"Fn::GetAtt": ["MediaConvertRole", "Arn"]}, f"{name}: PassRole only on MediaConvertRole")


def check_translated(cfn):
    tables = resources_of(cfn, "AWS::DynamoDB::Table")
    check(len(tables) == 1, "exactly one DynamoDB table")
    for name, t in tables.items():
        p = t["Properties"]
        check(p.get("BillingMode") == "PAY_PER_REQUEST", f"{name}: PAY_PER_REQUEST")
        check(
            p.get("KeySchema") == [{"AttributeName": "pk", "KeyType": "HASH"}],
            f"{name}: key schema must be pk (HASH), as the store expects",
        )
        check(
            p.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled") is True,
            f"{name}: point-in-time recovery on",
        )
        check(
            p.get("StreamSpecification", {}).get("StreamViewType") == "NEW_AND_OLD_IMAGES",
            f"{name}: streams both images (notify derives events from them)",
        )
        due = [i for i in p.get("GlobalSecondaryIndexes", []) if i.get("IndexName") == "pending-due"]
        check(
            len(due) == 1
            and due[0]["KeySchema"] == [
                {"AttributeName": "due_pk", "KeyType": "HASH"},
                {"AttributeName": "due_at", "KeyType": "RANGE"},
            ]
            and due[0]["Projection"] == {"ProjectionType": "KEYS_ONLY"},
            f"{name}: the sparse pending-due index the store queries",
        )

        sessions = {
            i.get("IndexName"): i for i in p.get("GlobalSecondaryIndexes", [])
            if i.get("IndexName", "").startswith("playback-")
        }
        for index, hash_key in (("playback-by-exercise", "pq_ex"), ("playback-by-org-day", "pq_day")):
            i = sessions.get(index, {})
            check(
                i.get("KeySchema") == [
                    {"AttributeName": hash_key, "KeyType": "HASH"},
                    {"AttributeName": "pq_at", "KeyType": "RANGE"},
                ]
                and i.get("Projection") == {"ProjectionType": "KEYS_ONLY"},
                f"{name}: the keys-only session index {index} the session store queries",
            )
        check(
            p.get("TimeToLiveSpecification") == {"AttributeName": "expires_at", "Enabled": True},
            f"{name}: playback sessions expire by TTL on expires_at",
        )

    buckets = resources_of(cfn, "AWS::S3::Bucket")
    for name, b in buckets.items():
        p = b["Properties"]
        block = p.get("PublicAccessBlockConfiguration", {})
        for flag in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
            check(block.get(flag) is True, f"{name}: {flag}")
        check("BucketEncryption" in p, f"{name}: encryption at rest")
        check("WebsiteConfiguration" not in p, f"{name}: no website hosting")
    tls_denied = set()
    for policy in resources_of(cfn, "AWS::S3::BucketPolicy").values():
        for st in policy["Properties"]["PolicyDocument"]["Statement"]:
            cond = st.get("Condition", {}).get("Bool", {})
            if st.get("Effect") == "Deny" and cond.get("aws:SecureTransport") == "false":
                tls_denied.add(policy["Properties"]["Bucket"].get("Ref"))
            check(
                not (st.get("Effect") == "Allow" and st.get("Principal") == "*"),
                "no bucket policy grants access to everyone",
            )
    for name in buckets:
        check(name in tls_denied, f"{name}: a policy denies non-TLS access")

    functions = resources_of(cfn, "AWS::Lambda::Function")
    roles = resources_of(cfn, "AWS::IAM::Role")
    for name, fn in functions.items():
        p = fn["Properties"]
        check(p.get("Runtime") == "provided.al2023", f"{name}: provided.al2023")
        check(p.get("Architectures") == ["arm64"], f"{name}: arm64")
        role = roles.get(p["Role"]["Fn::GetAtt"][0])
        check(role is not None, f"{name}: has its own role")
        if role is None:
            continue
        allowed = LEAST_PRIVILEGE.get(name)
        check(allowed is not None, f"{name}: no least-privilege expectation declared in this script")
        actions = set()
        for policy in role["Properties"].get("Policies", []):
            for st in as_list(policy["PolicyDocument"]["Statement"]):
                if st.get("Effect") == "Allow":
                    actions.update(as_list(st["Action"]))
                    for res in as_list(st.get("Resource", [])):
                        check(res != "*", f"{name}: no Allow on Resource '*'")
        check(allowed is None or actions == allowed, f"{name}: actions {sorted(actions)} != {sorted(allowed or [])}")
        managed = [json.dumps(m) for m in role["Properties"].get("ManagedPolicyArns", [])]
        allowed_managed = ("AWSLambdaBasicExecutionRole",) + EVENT_SOURCE_POLICIES.get(name, ())
        check(
            all(any(a in m for a in allowed_managed) for m in managed),
            f"{name}: only the basic execution (and its event sources') managed policies ({managed})",
        )

    for name, policy in resources_of(cfn, "AWS::CloudFront::ResponseHeadersPolicy").items():
        security = policy["Properties"]["ResponseHeadersPolicyConfig"].get("SecurityHeadersConfig", {})
        check(security.get("ContentTypeOptions", {}).get("Override") is True, f"{name}: nosniff on every response")
        csp = security.get("ContentSecurityPolicy", {}).get("ContentSecurityPolicy", "")
        check("sandbox" in csp and "default-src 'none'" in csp, f"{name}: a CSP that runs no script (SVG)")
    # The report function touches session items only: every table statement is bound to
    # PLAYBACK# keys, every index statement to the session indexes.
    quality = roles.get(functions.get("PlaybackQualityFunction", {}).get("Properties", {}).get("Role", {}).get("Fn::GetAtt", [""])[0])
    check(quality is not None, "PlaybackQualityFunction: has its own role")
    for policy in (quality or {}).get("Properties", {}).get("Policies", []):
        for st in as_list(policy["PolicyDocument"]["Statement"]):
            if "dynamodb:Query" in as_list(st["Action"]):
                check(
                    all("/index/playback-" in json.dumps(r) for r in as_list(st["Resource"])),
                    "PlaybackQualityFunction: queries the session indexes only",
                )
            else:
                keys = st.get("Condition", {}).get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")
                check(keys == ["PLAYBACK#*"], "PlaybackQualityFunction: items limited to PLAYBACK# keys")
    reconcilers = [n for n in functions if n == "ReconcileFunction"]
    check(reconcilers == ["ReconcileFunction"], "a reconciler function")
    for name in reconcilers:
        check(
            functions[name]["Properties"].get("ReservedConcurrentExecutions") == 1,
            f"{name}: one run at a time (reserved concurrency 1)",
        )
    mappings = resources_of(cfn, "AWS::Lambda::EventSourceMapping")
    for name, m in mappings.items():
        check(
            m["Properties"].get("FunctionResponseTypes") == ["ReportBatchItemFailures"],
            f"{name}: partial batch failures (one bad record never replays the batch)",
        )

    apis = resources_of(cfn, "AWS::ApiGatewayV2::Api")
    check(len(apis) == 1, "one HTTP API")
    schemes = [
        scheme.get("x-amazon-apigateway-authorizer", {})
        for api in apis.values()
        for scheme in api["Properties"].get("Body", {}).get("components", {}).get("securitySchemes", {}).values()
    ]
    check(any(s.get("type") == "jwt" for s in schemes), "a JWT authorizer")
    routes = resources_of(cfn, "AWS::ApiGatewayV2::Route")
    for name, r in routes.items():
        check(r["Properties"].get("AuthorizationType") == "JWT", f"{name}: route requires the JWT authorizer")
    for body in apis.values():
        paths = body["Properties"].get("Body", {}).get("paths", {})
        for path, methods in paths.items():
            for method, op in methods.items():
                if method in ("x-amazon-apigateway-any-method", "options"):
                    continue
                check(bool(op.get("security")), f"{method.upper()} {path}: JWT security required")
    check(
        "/v1/exercises/{id}/video" in json.dumps(apis),
        "GET /v1/exercises/{id}/video is routed",
    )


def rule_value(expr, params):
    """A CloudFormation rule expression under `params` (Ref, Equals, Not, And, Or)."""
    if isinstance(expr, dict) and len(expr) == 1:
        (fn, arg), = expr.items()
        if fn == "Ref":
            return params.get(arg)
        if fn == "Fn::Equals":
            a, b = (rule_value(x, params) for x in arg)
            return str(a) == str(b)
        if fn == "Fn::Not":
            return not rule_value(arg[0], params)
        if fn == "Fn::And":
            return all(rule_value(x, params) for x in arg)
        if fn == "Fn::Or":
            return any(rule_value(x, params) for x in arg)
        raise ValueError(f"rule function {fn} is not evaluated here")
    return expr


def check_samconfig(sam, path):
    """Every deploy environment of samconfig.toml passes the template's parameter constraints
    and Rules, as CloudFormation would check them before deploying."""
    import re
    import shlex
    import tomllib

    with open(path, "rb") as f:
        config = tomllib.load(f)
    declared = sam.get("Parameters", {})
    envs = 0
    for env, commands in config.items():
        if not isinstance(commands, dict):  # `version`
            continue
        overrides = ((commands.get("deploy") or {}).get("parameters") or {}).get("parameter_overrides")
        if overrides is None:
            continue
        envs += 1
        if isinstance(overrides, str):
            overrides = shlex.split(overrides)
        given = dict(o.split("=", 1) for o in overrides)
        for name in given:
            check(name in declared, f"samconfig [{env}]: {name} is not a template parameter")
        params = {n: str(p["Default"]) for n, p in declared.items() if "Default" in p}
        params.update(given)
        for name, p in declared.items():
            if name not in params:
                check(False, f"samconfig [{env}]: {name} has no default and no value")
                continue
            pattern = p.get("AllowedPattern")
            check(
                pattern is None or re.fullmatch(pattern, params[name]) is not None,
                f"samconfig [{env}]: {name}={params[name]!r} does not match {pattern}",
            )
            allowed = p.get("AllowedValues")
            check(
                allowed is None or params[name] in [str(a) for a in allowed],
                f"samconfig [{env}]: {name}={params[name]!r} is not one of {allowed}",
            )
        for rule, body in (sam.get("Rules") or {}).items():
            if not rule_value(body.get("RuleCondition", True), params):
                continue
            for a in body.get("Assertions", []):
                check(
                    bool(rule_value(a["Assert"], params)),
                    f"samconfig [{env}]: rule {rule}: {a.get('AssertDescription', 'fails')}",
                )
    check(envs > 0, "samconfig.toml has no deploy environment")
    return envs


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "template.yaml")
    with open(path, encoding="utf-8") as f:
        sam = yaml_parse(f.read())
    cfn_lint(path, "template")
    check_sam_source(sam)
    check_public_endpoints(sam)
    check_edge_and_events(sam)
    samconfig = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "samconfig.toml")
    environments = check_samconfig(sam, samconfig)
    # What `sam package` does before the transform: local code paths become S3 URIs.
    packaged = json.loads(json.dumps(sam))
    for fn in resources_of(packaged, "AWS::Serverless::Function").values():
        fn["Properties"]["CodeUri"] = "s3://packaged-artifacts/code.zip"
    try:
        cfn = Translator(managed_policy_map={}, sam_parser=Parser()).translate(
            packaged, parameter_values=dict(PARAMETERS)
        )
    except Exception as e:  # the translator's errors carry the reason in their text
        failures.append(f"SAM translator: {e}")
        cfn = None
    if cfn is not None:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as out:
            json.dump(cfn, out)
        try:
            # W2001: the translator inlines parameter values it resolved, leaving them "unused".
            cfn_lint(out.name, "translated", ignore=("W2001",))
        finally:
            os.unlink(out.name)
        check_translated(cfn)
    if failures:
        print("template check failed:", file=sys.stderr)
        for f in failures:
            print(f"  - {f}", file=sys.stderr)
        sys.exit(1)
    print(f"template ok: cfn-lint, SAM translator, cfn-lint of the translation, {len(PARAMETERS)} parameters resolved, security rules, samconfig's {environments} environments pass the rules")


if __name__ == "__main__":
    main()
