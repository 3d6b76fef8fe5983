"""Proves check_template.py catches what it claims to: each mutation of template.yaml must fail."""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(os.path.dirname(HERE), "template.yaml")

MUTATIONS = {
    "broader IAM": ("Action: dynamodb:GetItem", "Action: dynamodb:*"),
    "plaintext secret": (
        'CDN_TOKEN_KEY: !Sub "{{resolve:secretsmanager:${SecretName}:SecretString:cdn_token_key}}"',
        "CDN_TOKEN_KEY: plaintext-key-in-template",
    ),
    "public bucket": ("RestrictPublicBuckets: true", "RestrictPublicBuckets: false"),
    "no TLS-only policy": ('aws:SecureTransport: "false"', 'aws:SecureTransport: "true"'),
    "wrong table key": ("- AttributeName: pk\n          KeyType: HASH", "- AttributeName: id\n          KeyType: HASH"),
    "unauthenticated route": ("DefaultAuthorizer: PlatformJwt", "# no default authorizer"),
    "invalid CloudFormation": ("BillingMode: PAY_PER_REQUEST", "BillingMode: FREE"),
    "edge function drifted from the tested file": ("var KEY_NAME = 'cdn_token_key';", "var KEY_NAME = 'other';"),
    "MediaConvert rule sees every stack's jobs": ("exvid_stack: [!Ref AWS::StackName]", "exvid_stack: [{exists: true}]"),
    "public webhook without reserved concurrency": ("      ReservedConcurrentExecutions: !Ref BunnyWebhookConcurrency\n", ""),
    "webhook signing key in plaintext": (
        "BUNNY_WEBHOOK_SIGNING_KEY: !Sub \"{{resolve:secretsmanager:${SecretName}:SecretString:bunny_webhook_signing_key}}\"",
        "BUNNY_WEBHOOK_SIGNING_KEY: \"read-only-key-in-plaintext\"",
    ),
    "webhook may scan the table": ("Sid: VideoRecords\n              Effect: Allow\n              Action: [dynamodb:GetItem, dynamodb:PutItem, dynamodb:DeleteItem]\n              Resource: !GetAtt VideosTable.Arn\n\n  BunnyWebhookLogGroup", "Sid: VideoRecords\n              Effect: Allow\n              Action: [dynamodb:GetItem, dynamodb:PutItem, dynamodb:DeleteItem, dynamodb:Scan]\n              Resource: !GetAtt VideosTable.Arn\n\n  BunnyWebhookLogGroup"),
    "PassRole on any role": ("Resource: !GetAtt MediaConvertRole.Arn\n              Condition:", "Resource: !Sub \"arn:${AWS::Partition}:iam::${AWS::AccountId}:role/*\"\n              Condition:"),
    "originals served by CloudFront": ('- !Sub "${MediaBucket.Arn}/*/exercises/*/thumbnail/*"\n              - !Sub "${MediaBucket.Arn}/*/exercises/*/instructions/*"\n            Condition:', '- !Sub "${MediaBucket.Arn}/*"\n            Condition:'),
    "no table stream": ("StreamViewType: NEW_AND_OLD_IMAGES", "StreamViewType: KEYS_ONLY"),
    "reconciler may scan the table": ("Action: dynamodb:Query\n              Resource: !Sub \"${VideosTable.Arn}/index/pending-due\"", "Action: [dynamodb:Query, dynamodb:Scan]\n              Resource: !Sub \"${VideosTable.Arn}/index/pending-due\""),
    "two reconcilers at once": ("      ReservedConcurrentExecutions: 1\n", ""),
    "outbound webhook secret in plaintext": (
        'WEBHOOK_SECRET: !Sub "{{resolve:secretsmanager:${SecretName}:SecretString:webhook_secret}}"',
        "WEBHOOK_SECRET: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ),
    "a bad stream record replays its batch": ("            FunctionResponseTypes: [ReportBatchItemFailures]\n            DestinationConfig:", "            DestinationConfig:"),
    "binary where SAM does not read it": (
        "      BuildProperties:\n        Binary: playback\n",
        "      Binary: playback\n",
    ),
    "binary of no package": ("        Binary: playback\n", "        Binary: plaback\n"),
    "served SVG may run scripts": ("; style-src 'unsafe-inline'; sandbox\"", "; style-src 'unsafe-inline'; script-src *\""),
}


SAMCONFIG = os.path.join(os.path.dirname(HERE), "samconfig.toml")

# Broken samconfig.toml environments the check must refuse (against the real template).
SAMCONFIG_MUTATIONS = {
    "bunny provider without a library": ('  "BunnyStreamLibraryId=100001",\n', ""),
    "library id that is not a number": ("BunnyStreamLibraryId=100002", "BunnyStreamLibraryId=lib-2"),
    "parameter the template does not have": ('  "Stage=dev",', '  "Stage=dev",\n  "VideoProvidr=aws_mediaconvert",'),
}


def rejected(args):
    r = subprocess.run(
        [sys.executable, os.path.join(HERE, "check_template.py"), *args],
        capture_output=True,
        text=True,
    )
    return r.returncode != 0


def main():
    with open(TEMPLATE, encoding="utf-8") as f:
        original = f.read()
    missed = []
    for name, (old, new) in MUTATIONS.items():
        if old not in original:
            missed.append(f"{name}: the text to mutate is no longer in template.yaml")
            continue
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as t:
            t.write(original.replace(old, new, 1))
        try:
            if not rejected([t.name]):
                missed.append(f"{name}: accepted")
        finally:
            os.unlink(t.name)
    with open(SAMCONFIG, encoding="utf-8") as f:
        config = f.read()
    for name, (old, new) in SAMCONFIG_MUTATIONS.items():
        if old not in config:
            missed.append(f"samconfig {name}: the text to mutate is no longer in samconfig.toml")
            continue
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as t:
            t.write(config.replace(old, new, 1))
        try:
            if not rejected([TEMPLATE, t.name]):
                missed.append(f"samconfig {name}: accepted")
        finally:
            os.unlink(t.name)
    if missed:
        print("template checker self-test failed:", *missed, sep="\n  - ", file=sys.stderr)
        sys.exit(1)
    print(
        f"template checker self-test ok: {len(MUTATIONS)} broken templates and "
        f"{len(SAMCONFIG_MUTATIONS)} broken samconfig environments rejected"
    )


if __name__ == "__main__":
    main()
