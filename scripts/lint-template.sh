#!/usr/bin/env bash
# Lints template.yaml offline. Run from anywhere; paths are relative to the repo root.
#
# What it checks, and why four steps:
#   1. `sam validate --lint`: SAM's own validation plus cfn-lint, as `sam deploy` users see it.
#   2. `cfn-lint template.yaml`: the same rules at cfn-lint's full strictness (warnings fail too).
#   3. cfn-lint on the SAM-*transformed* template. cfn-lint 1.x no longer runs the SAM transform:
#      it validates AWS::Serverless::* resources against SAM's schema, and its circular-dependency
#      rule (E3004) skips any cycle that passes through a SAM resource. So neither step above
#      catches, e.g., a bucket whose notifications trigger the function while the function's
#      policy Refs the bucket, which CloudFormation rejects at deploy time. Here the template is
#      run through samtranslator (installed with aws-sam-cli; offline, with a stub for managed
#      policy ARNs) and the resulting plain CloudFormation is linted, E3004 included.
#   4. scripts/check-iam.py: every AWS SDK operation called in src/ needs an IAM action the
#      function's role grants (on the right queue, for the dead-letter and work queues). Linters
#      cannot know what the code calls; a missing grant only shows as AccessDenied in production.
#
# Usage: scripts/lint-template.sh [TEMPLATE]   (default: template.yaml at the repo root)
# Exits non-zero if any step reports anything. VENV overrides the venv (default: .venv).
set -euo pipefail

TEMPLATE="$(realpath "${1:-$(dirname "$0")/../template.yaml}")"
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
export SAM_CLI_TELEMETRY=0
# samtranslator reads the region for pseudo parameters; nothing here calls AWS.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

for tool in sam cfn-lint python; do
    if [[ ! -x "$VENV/bin/$tool" ]]; then
        echo "lint-template: $VENV/bin/$tool not found; create the venv first (see Makefile)" >&2
        exit 2
    fi
done

status=0
step() {
    echo "==> $*"
    if ! "$@"; then
        status=1
    fi
}

step "$VENV/bin/sam" validate --lint --region us-east-1 --template-file "$TEMPLATE"
step "$VENV/bin/cfn-lint" "$TEMPLATE"

transformed="$(mktemp --suffix=.json)"
# Kept when something failed: cfn-lint's line numbers for step 3 point into it.
trap 'if [[ $status -eq 0 ]]; then rm -f "$transformed"; else echo "transformed template kept at $transformed" >&2; fi' EXIT
transform() {
    "$VENV/bin/python" - "$TEMPLATE" "$transformed" <<'PY'
import json
import sys

from samcli.yamlhelper import yaml_parse
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform


class AnyManagedPolicy(dict):
    """Resolves any AWS managed policy name to its ARN without calling IAM."""

    def __contains__(self, name):
        return True

    def __getitem__(self, name):
        return f"arn:aws:iam::aws:policy/{name}"

    def get(self, name, default=None):
        return self[name]


class OfflineLoader:
    def load(self):
        return AnyManagedPolicy()


# Local artifact paths, as `sam package` would replace them with S3 URIs (the transform only
# accepts the latter).
ARTIFACT_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::Api": "DefinitionUri",
    "AWS::Serverless::HttpApi": "DefinitionUri",
    "AWS::Serverless::StateMachine": "DefinitionUri",
}

source, target = sys.argv[1], sys.argv[2]
with open(source, encoding="utf-8") as f:
    template = yaml_parse(f.read())
for resource in template.get("Resources", {}).values():
    prop = ARTIFACT_PROPERTIES.get(resource.get("Type"))
    props = resource.get("Properties") or {}
    value = props.get(prop)
    if isinstance(value, str) and not value.startswith("s3://"):
        props[prop] = "s3://lint-placeholder/artifact.zip"
try:
    result = transform(template, {}, OfflineLoader())
except InvalidDocumentException as e:
    for cause in e.causes:
        print(f"{source}: SAM transform: {cause.message}", file=sys.stderr)
    sys.exit(1)
with open(target, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
PY
}
step transform
if [[ -s "$transformed" ]]; then
    step "$VENV/bin/cfn-lint" "$transformed"
fi
step "$VENV/bin/python" scripts/check-iam.py "$TEMPLATE"

if [[ $status -eq 0 ]]; then
    echo "lint-template: OK"
else
    echo "lint-template: FAILED" >&2
fi
exit "$status"
