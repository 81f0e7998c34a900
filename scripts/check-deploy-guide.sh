#!/usr/bin/env bash
# Checks docs/deploy.md against the repository, offline, so the guide cannot drift from the
# template it explains. `make test` runs it.
#
# What it checks:
#   1. every Parameter of template.yaml has an answer in the guide's `sam deploy --guided` table,
#      and that table names no Parameter the template lacks;
#   2. the outputs table lists exactly the template's Outputs, and every `output <Name>` used in a
#      command names one of them;
#   3. the alarms table lists exactly the template's CloudWatch alarms;
#   4. every `make <target>` in the guide is a Makefile target, every `events/*.json` exists;
#   5. every ```sh block parses (`bash -n`).
# Not checked: commands that need an AWS account, and `sam build` (too slow for every test run;
# see the guide).
#
# Usage: scripts/check-deploy-guide.sh [GUIDE] [TEMPLATE]   (defaults: docs/deploy.md, template.yaml)
# VENV overrides the venv (default: .venv); its python parses the template with SAM's YAML loader.
set -euo pipefail

cd "$(dirname "$0")/.."
GUIDE="${1:-docs/deploy.md}"
TEMPLATE="${2:-template.yaml}"
VENV="${VENV:-.venv}"
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "check-deploy-guide: $VENV/bin/python not found; create the venv first (make venv)" >&2
    exit 2
fi

"$VENV/bin/python" - "$GUIDE" "$TEMPLATE" <<'PY'
import os
import re
import subprocess
import sys

from samcli.yamlhelper import yaml_parse

guide_path, template_path = sys.argv[1], sys.argv[2]
with open(guide_path, encoding="utf-8") as f:
    guide = f.read()
with open(template_path, encoding="utf-8") as f:
    template = yaml_parse(f.read())
with open("Makefile", encoding="utf-8") as f:
    makefile = f.read()

problems = []


def table_after(header):
    """First-column backticked names of the markdown table whose header row starts with `header`."""
    lines = guide.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header):
            names = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                first = row.split("|")[1]
                names.extend(re.findall(r"`([A-Za-z][A-Za-z0-9]*)`", first))
            return names
    problems.append(f"{guide_path}: no table with header {header!r}")
    return []


def compare(what, documented, actual):
    for name in sorted(set(actual) - set(documented)):
        problems.append(f"{guide_path}: {what} {name} is in {template_path} but not in the guide")
    for name in sorted(set(documented) - set(actual)):
        problems.append(f"{guide_path}: {what} {name} is in the guide but not in {template_path}")


parameters = template.get("Parameters", {})
outputs = template.get("Outputs", {})
resources = template.get("Resources", {})
alarms = [n for n, r in resources.items() if r.get("Type") == "AWS::CloudWatch::Alarm"]

compare("Parameter", table_after("| Question | Answer |"), parameters)
compare("Output", table_after("| Output | What |"), outputs)
compare("alarm", table_after("| Alarm | Fires when |"), alarms)

blocks = re.findall(r"```sh\n(.*?)```", guide, flags=re.S)
code = "\n".join(blocks) + "\n" + "\n".join(re.findall(r"`([^`\n]+)`", guide))

for name in sorted(set(re.findall(r"(?<![-\w])output ([A-Z][A-Za-z0-9]*)\b", code))):
    if name not in outputs:
        problems.append(f"{guide_path}: `output {name}` names no Output of {template_path}")

targets = set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", makefile, flags=re.M))
for target in sorted(set(re.findall(r"\bmake ([a-z][\w-]*)", code))):
    if target not in targets:
        problems.append(f"{guide_path}: `make {target}` is not a Makefile target")

for path in sorted(set(re.findall(r"\bevents/[\w.-]+\.json\b", guide))):
    if not os.path.exists(path):
        problems.append(f"{guide_path}: {path} does not exist")

for i, block in enumerate(blocks, 1):
    result = subprocess.run(["bash", "-n"], input=block, text=True, capture_output=True)
    if result.returncode != 0:
        problems.append(f"{guide_path}: sh block {i} does not parse: {result.stderr.strip()}")

for p in problems:
    print(p, file=sys.stderr)
if problems:
    print("check-deploy-guide: FAILED", file=sys.stderr)
    sys.exit(1)
print(f"check-deploy-guide: OK ({len(parameters)} Parameters, {len(outputs)} Outputs, "
      f"{len(alarms)} alarms, {len(blocks)} sh blocks)")
PY
