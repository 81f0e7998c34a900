#!/usr/bin/env python3
"""Checks that the function's IAM role grants every AWS SDK operation the Rust code calls.

A missing grant only shows in production, as AccessDenied on the path that needs it (redrive
shipped without sqs:ChangeMessageVisibility on the dead-letter queue, for instance). This script
finds such gaps offline; scripts/lint-template.sh runs it as its fourth step (so `make test` does).

How:
  1. The template (SAM's YAML loader, so !Ref/!Sub/!GetAtt parse): the function's `Role` is
     followed to its AWS::IAM::Role; every IAM action granted by an `Effect: Allow` statement of
     the role's inline Policies, or of an AWS::IAM::Policy / ManagedPolicy / RolePolicy resource
     attached to it, counts. Wildcards (s3:*, s3:Get*, *) and Allow + NotAction are honoured.
  2. The code (src/**/*.rs, comments and string literals blanked first): every `.name(` whose
     name is an operation of the S3, SQS or Secrets Manager SDK (the snake_case operation names
     of aws-sdk-s3 1.157, aws-sdk-sqs 1.119, aws-sdk-secretsmanager 1.125, embedded below) is a
     call. Each operation maps to the IAM action(s) it needs, IAM's naming exceptions included
     (list_objects_v2 -> s3:ListBucket, head_object -> s3:GetObject, ...). A versioned request
     (`.version_id(x)` between the call and its `.send()`) needs the *Version action too
     (get_object -> s3:GetObjectVersion). Code under #[cfg(test)] is skipped.
  3. Queues, for the SQS calls of the types in QUEUE_OF_TYPE (SqsDeadLetters, SqsWorkQueue): the
     environment variable the type's queue URL comes from is followed, in the function's
     Environment, to the queue resource, and the action must be granted by a statement whose
     Resource names that queue (or "*"). This is what catches a permission granted on the work
     queue only while redrive needs it on the dead-letter queue. The table is code knowledge:
     if a listed type no longer has an impl in src/, the check fails and asks for an update.
  4. Every action some call needs and no Allow statement grants (on the queue, where known) is
     reported, one line per action with the file:line of each call; exit status 1. Otherwise one
     OK line lists what was checked.

Not checked (a passing run does not prove these):
  - Resources, apart from the queues of step 3. An action counts as granted if any Allow
    statement names it, whatever its Resource: the statement may cover another bucket or key
    prefix than the call uses (S3 keys are computed at run time), and another queue for SQS calls
    outside QUEUE_OF_TYPE (e.g. the CLI's).
  - Conditions on Allow statements, Deny statements (in the role or elsewhere), permission
    boundaries, SCPs, and resource policies: e.g. a queue policy that denies the role.
  - Managed policies attached by ARN (ManagedPolicyArns): they cannot be read offline; they are
    listed in a note and grant nothing here.
  - Which code path runs under the role: the CLI (src/cli) runs with a person's credentials, yet
    its calls are checked too (conservative). A method of our own that happens to share an
    operation's name (`.get_object(` on a test double) counts as a call.
  - Calls made indirectly (a SDK operation named in a macro, through a variable method name) and
    services other than S3, SQS and Secrets Manager.
  - Permissions of other services an operation needs (KMS for SSE-KMS objects or queues).
    Within S3 they are included: copy_object and upload_part_copy need s3:GetObject too.
  - SQS calls of a type not in QUEUE_OF_TYPE (a new wrapper) are checked by action only: add the
    type to the table to have its queue checked.

Usage:
  scripts/check-iam.py [TEMPLATE] [--src DIR] [--function LOGICAL_ID]
      TEMPLATE defaults to template.yaml, DIR to src, both relative to the repository root.
  scripts/check-iam.py --compare-sdk
      Maintenance, not part of the check: lists operations of the SDK crates in the cargo
      registry ($CARGO_HOME, default ~/.cargo) that the table below lacks (after an SDK upgrade).
      Exit status 1 if any.
Run it with the venv's python (it needs samcli or cfn-lint for the YAML loader).
"""

import argparse
import glob
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# --- SDK operations -> IAM actions --------------------------------------------------------------
# Operation names are the folder names under aws-sdk-<service>-<version>/src/operation/.

# S3: IAM action names mostly differ from the operation names, so every operation is listed.
S3 = {
    "abort_multipart_upload": ["s3:AbortMultipartUpload"],
    "complete_multipart_upload": ["s3:PutObject"],
    "copy_object": ["s3:GetObject", "s3:PutObject"],
    "create_bucket": ["s3:CreateBucket"],
    "create_bucket_metadata_configuration": ["s3:CreateBucketMetadataTableConfiguration"],
    "create_bucket_metadata_table_configuration": ["s3:CreateBucketMetadataTableConfiguration"],
    "create_multipart_upload": ["s3:PutObject"],
    "create_session": ["s3express:CreateSession"],
    "delete_bucket": ["s3:DeleteBucket"],
    "delete_bucket_analytics_configuration": ["s3:PutAnalyticsConfiguration"],
    "delete_bucket_cors": ["s3:PutBucketCORS"],
    "delete_bucket_encryption": ["s3:PutEncryptionConfiguration"],
    "delete_bucket_intelligent_tiering_configuration": ["s3:PutIntelligentTieringConfiguration"],
    "delete_bucket_inventory_configuration": ["s3:PutInventoryConfiguration"],
    "delete_bucket_lifecycle": ["s3:PutLifecycleConfiguration"],
    "delete_bucket_metadata_configuration": ["s3:DeleteBucketMetadataTableConfiguration"],
    "delete_bucket_metadata_table_configuration": ["s3:DeleteBucketMetadataTableConfiguration"],
    "delete_bucket_metrics_configuration": ["s3:PutMetricsConfiguration"],
    "delete_bucket_ownership_controls": ["s3:PutBucketOwnershipControls"],
    "delete_bucket_policy": ["s3:DeleteBucketPolicy"],
    "delete_bucket_replication": ["s3:PutReplicationConfiguration"],
    "delete_bucket_tagging": ["s3:PutBucketTagging"],
    "delete_bucket_website": ["s3:DeleteBucketWebsite"],
    "delete_object": ["s3:DeleteObject"],
    "delete_object_annotation": ["s3:DeleteObjectAnnotation"],
    "delete_object_tagging": ["s3:DeleteObjectTagging"],
    "delete_objects": ["s3:DeleteObject"],
    "delete_public_access_block": ["s3:PutBucketPublicAccessBlock"],
    "get_bucket_abac": ["s3:GetBucketABAC"],
    "get_bucket_accelerate_configuration": ["s3:GetAccelerateConfiguration"],
    "get_bucket_acl": ["s3:GetBucketAcl"],
    "get_bucket_analytics_configuration": ["s3:GetAnalyticsConfiguration"],
    "get_bucket_cors": ["s3:GetBucketCORS"],
    "get_bucket_encryption": ["s3:GetEncryptionConfiguration"],
    "get_bucket_intelligent_tiering_configuration": ["s3:GetIntelligentTieringConfiguration"],
    "get_bucket_inventory_configuration": ["s3:GetInventoryConfiguration"],
    "get_bucket_lifecycle_configuration": ["s3:GetLifecycleConfiguration"],
    "get_bucket_location": ["s3:GetBucketLocation"],
    "get_bucket_logging": ["s3:GetBucketLogging"],
    "get_bucket_metadata_configuration": ["s3:GetBucketMetadataTableConfiguration"],
    "get_bucket_metadata_table_configuration": ["s3:GetBucketMetadataTableConfiguration"],
    "get_bucket_metrics_configuration": ["s3:GetMetricsConfiguration"],
    "get_bucket_notification_configuration": ["s3:GetBucketNotification"],
    "get_bucket_ownership_controls": ["s3:GetBucketOwnershipControls"],
    "get_bucket_policy": ["s3:GetBucketPolicy"],
    "get_bucket_policy_status": ["s3:GetBucketPolicyStatus"],
    "get_bucket_replication": ["s3:GetReplicationConfiguration"],
    "get_bucket_request_payment": ["s3:GetBucketRequestPayment"],
    "get_bucket_tagging": ["s3:GetBucketTagging"],
    "get_bucket_versioning": ["s3:GetBucketVersioning"],
    "get_bucket_website": ["s3:GetBucketWebsite"],
    "get_object": ["s3:GetObject"],
    "get_object_acl": ["s3:GetObjectAcl"],
    "get_object_annotation": ["s3:GetObjectAnnotation"],
    "get_object_attributes": ["s3:GetObjectAttributes"],
    "get_object_legal_hold": ["s3:GetObjectLegalHold"],
    "get_object_lock_configuration": ["s3:GetBucketObjectLockConfiguration"],
    "get_object_retention": ["s3:GetObjectRetention"],
    "get_object_tagging": ["s3:GetObjectTagging"],
    "get_object_torrent": ["s3:GetObjectTorrent"],
    "get_public_access_block": ["s3:GetBucketPublicAccessBlock"],
    "head_bucket": ["s3:ListBucket"],
    "head_object": ["s3:GetObject"],
    "list_bucket_analytics_configurations": ["s3:GetAnalyticsConfiguration"],
    "list_bucket_intelligent_tiering_configurations": ["s3:GetIntelligentTieringConfiguration"],
    "list_bucket_inventory_configurations": ["s3:GetInventoryConfiguration"],
    "list_bucket_metrics_configurations": ["s3:GetMetricsConfiguration"],
    "list_buckets": ["s3:ListAllMyBuckets"],
    "list_directory_buckets": ["s3express:ListAllMyDirectoryBuckets"],
    "list_multipart_uploads": ["s3:ListBucketMultipartUploads"],
    "list_object_annotations": ["s3:ListObjectAnnotations"],
    "list_object_versions": ["s3:ListBucketVersions"],
    "list_objects": ["s3:ListBucket"],
    "list_objects_v2": ["s3:ListBucket"],
    "list_parts": ["s3:ListMultipartUploadParts"],
    "put_bucket_abac": ["s3:PutBucketABAC"],
    "put_bucket_accelerate_configuration": ["s3:PutAccelerateConfiguration"],
    "put_bucket_acl": ["s3:PutBucketAcl"],
    "put_bucket_analytics_configuration": ["s3:PutAnalyticsConfiguration"],
    "put_bucket_cors": ["s3:PutBucketCORS"],
    "put_bucket_encryption": ["s3:PutEncryptionConfiguration"],
    "put_bucket_intelligent_tiering_configuration": ["s3:PutIntelligentTieringConfiguration"],
    "put_bucket_inventory_configuration": ["s3:PutInventoryConfiguration"],
    "put_bucket_lifecycle_configuration": ["s3:PutLifecycleConfiguration"],
    "put_bucket_logging": ["s3:PutBucketLogging"],
    "put_bucket_metrics_configuration": ["s3:PutMetricsConfiguration"],
    "put_bucket_notification_configuration": ["s3:PutBucketNotification"],
    "put_bucket_ownership_controls": ["s3:PutBucketOwnershipControls"],
    "put_bucket_policy": ["s3:PutBucketPolicy"],
    "put_bucket_replication": ["s3:PutReplicationConfiguration"],
    "put_bucket_request_payment": ["s3:PutBucketRequestPayment"],
    "put_bucket_tagging": ["s3:PutBucketTagging"],
    "put_bucket_versioning": ["s3:PutBucketVersioning"],
    "put_bucket_website": ["s3:PutBucketWebsite"],
    "put_object": ["s3:PutObject"],
    "put_object_acl": ["s3:PutObjectAcl"],
    "put_object_annotation": ["s3:PutObjectAnnotation"],
    "put_object_legal_hold": ["s3:PutObjectLegalHold"],
    "put_object_lock_configuration": ["s3:PutBucketObjectLockConfiguration"],
    "put_object_retention": ["s3:PutObjectRetention"],
    "put_object_tagging": ["s3:PutObjectTagging"],
    "put_public_access_block": ["s3:PutBucketPublicAccessBlock"],
    "rename_object": ["s3express:CreateSession"],
    "restore_object": ["s3:RestoreObject"],
    "select_object_content": ["s3:GetObject"],
    "update_bucket_metadata_annotation_table_configuration": ["s3:UpdateBucketMetadataAnnotationTableConfiguration"],
    "update_bucket_metadata_inventory_table_configuration": ["s3:UpdateBucketMetadataInventoryTableConfiguration"],
    "update_bucket_metadata_journal_table_configuration": ["s3:UpdateBucketMetadataJournalTableConfiguration"],
    "update_object_encryption": ["s3:UpdateObjectEncryption"],
    "upload_part": ["s3:PutObject"],
    "upload_part_copy": ["s3:GetObject", "s3:PutObject"],
    "write_get_object_response": ["s3-object-lambda:WriteGetObjectResponse"],
}

# Mappings derived from the operation's name for operations newer than what this table's author
# could check against AWS's Service Authorization Reference: a call to one prints a warning.
S3_UNVERIFIED = {
    "create_bucket_metadata_configuration", "delete_bucket_metadata_configuration",
    "delete_object_annotation", "get_bucket_abac", "get_bucket_metadata_configuration",
    "get_object_annotation", "list_object_annotations", "put_bucket_abac", "put_object_annotation",
    "rename_object", "update_bucket_metadata_annotation_table_configuration",
    "update_bucket_metadata_inventory_table_configuration",
    "update_bucket_metadata_journal_table_configuration", "update_object_encryption",
}

# With a version id the request needs these (instead of or besides the unversioned action; both
# are required here, which is what a role serving both kinds of request needs anyway).
S3_VERSIONED = {
    "get_object": ["s3:GetObjectVersion"],
    "head_object": ["s3:GetObjectVersion"],
    "get_object_torrent": ["s3:GetObjectVersionTorrent"],
    "get_object_attributes": ["s3:GetObjectVersionAttributes"],
    "get_object_acl": ["s3:GetObjectVersionAcl"],
    "put_object_acl": ["s3:PutObjectVersionAcl"],
    "get_object_tagging": ["s3:GetObjectVersionTagging"],
    "put_object_tagging": ["s3:PutObjectVersionTagging"],
    "delete_object_tagging": ["s3:DeleteObjectVersionTagging"],
    "delete_object": ["s3:DeleteObjectVersion"],
}

# SQS and Secrets Manager: the IAM action is the operation's name in CamelCase, except for these.
SQS_OPERATIONS = """
    add_permission cancel_message_move_task change_message_visibility
    change_message_visibility_batch create_queue delete_message delete_message_batch delete_queue
    get_queue_attributes get_queue_url list_dead_letter_source_queues list_message_move_tasks
    list_queue_tags list_queues purge_queue receive_message remove_permission send_message
    send_message_batch set_queue_attributes start_message_move_task tag_queue untag_queue
""".split()
SQS_EXCEPTIONS = {
    # Batch operations are authorised as their single-message action.
    "send_message_batch": ["sqs:SendMessage"],
    "delete_message_batch": ["sqs:DeleteMessage"],
    "change_message_visibility_batch": ["sqs:ChangeMessageVisibility"],
}
SECRETSMANAGER_OPERATIONS = """
    batch_get_secret_value cancel_rotate_secret create_secret delete_resource_policy delete_secret
    describe_secret get_random_password get_resource_policy get_secret_value
    list_secret_version_ids list_secrets put_resource_policy put_secret_value
    remove_regions_from_replication replicate_secret_to_regions restore_secret rotate_secret
    stop_replication_to_replica tag_resource untag_resource update_secret
    update_secret_version_stage validate_resource_policy
""".split()
SECRETSMANAGER_EXCEPTIONS = {
    # Each secret returned is also authorised as GetSecretValue.
    "batch_get_secret_value": ["secretsmanager:BatchGetSecretValue", "secretsmanager:GetSecretValue"],
}


def camel(name):
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def operation_table():
    """{service: {operation: [IAM actions]}} for the services checked."""
    sqs = {op: SQS_EXCEPTIONS.get(op, [f"sqs:{camel(op)}"]) for op in SQS_OPERATIONS}
    sm = {
        op: SECRETSMANAGER_EXCEPTIONS.get(op, [f"secretsmanager:{camel(op)}"])
        for op in SECRETSMANAGER_OPERATIONS
    }
    return {"s3": S3, "sqs": sqs, "secretsmanager": sm}


# SQS calls inside `impl ... for <Type>` use the queue whose URL the function gets from this
# environment variable (src/startup.rs builds each type from the config field of that variable).
QUEUE_OF_TYPE = {
    "SqsDeadLetters": "DEAD_LETTER_QUEUE_URL",
    "SqsWorkQueue": "WORK_QUEUE_URL",
}


# --- Template side -------------------------------------------------------------------------------

def load_template(path):
    text = Path(path).read_text(encoding="utf-8")
    try:
        from samcli.yamlhelper import yaml_parse
    except ImportError:
        try:
            from cfnlint.decode.cfn_yaml import loads as yaml_parse
        except ImportError:
            sys.exit("check-iam: neither samcli nor cfn-lint is importable; run with the venv's "
                     "python (make venv)")
    return yaml_parse(text)


def logical_id(ref):
    """The logical ID a Ref / GetAtt value points to, or None."""
    if isinstance(ref, dict):
        if "Ref" in ref and isinstance(ref["Ref"], str):
            return ref["Ref"]
        getatt = ref.get("Fn::GetAtt")
        if isinstance(getatt, list) and getatt:
            return getatt[0]
        if isinstance(getatt, str):
            return getatt.split(".", 1)[0]
    return None


def strings_in(value, conditional):
    """Action strings in an Action/NotAction value; Fn::If branches count (both of them)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v, conditional)]
    if isinstance(value, dict) and "Fn::If" in value:
        branches = value["Fn::If"]
        conditional.append(str(branches[0]) if branches else "?")
        return [s for v in branches[1:] for s in strings_in(v, conditional)]
    return []


def statements(document):
    if not isinstance(document, dict):
        return []
    st = document.get("Statement", [])
    return st if isinstance(st, list) else [st]


def function_role(resources, function_id):
    functions = {
        name: r for name, r in resources.items()
        if r.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function")
    }
    if function_id:
        if function_id not in functions:
            sys.exit(f"check-iam: no function {function_id} in the template")
        functions = {function_id: functions[function_id]}
    if len(functions) != 1:
        sys.exit(f"check-iam: expected one function, found {sorted(functions) or 'none'}; "
                 "pass --function")
    (name, function), = functions.items()
    role_id = logical_id((function.get("Properties") or {}).get("Role"))
    if role_id not in resources or resources[role_id].get("Type") != "AWS::IAM::Role":
        sys.exit(f"check-iam: {name}'s Role is not an AWS::IAM::Role of this template "
                 "(SAM Policies / an external role are not supported)")
    return name, role_id


def granted(resources, role_id):
    """([(action patterns, is NotAction, Resource value)] of the role's Allow statements, notes)."""
    role = resources[role_id].get("Properties") or {}
    documents = [p.get("PolicyDocument") for p in role.get("Policies") or []]
    notes = []
    for name, r in resources.items():
        props = r.get("Properties") or {}
        kind = r.get("Type")
        if kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            if role_id in [logical_id(x) for x in props.get("Roles") or []]:
                documents.append(props.get("PolicyDocument"))
        elif kind == "AWS::IAM::RolePolicy" and logical_id(props.get("RoleName")) == role_id:
            documents.append(props.get("PolicyDocument"))
    if role.get("ManagedPolicyArns"):
        notes.append(f"{role_id} has ManagedPolicyArns, not read (they grant nothing here)")
    allows, conditional = [], []
    for doc in documents:
        for st in statements(doc):
            if not isinstance(st, dict) or st.get("Effect") != "Allow":
                continue
            # NotResource: "everything but", loosely taken as covering any queue.
            resource = st.get("Resource", "*") if "NotResource" not in st else "*"
            if "Action" in st:
                allows.append((strings_in(st["Action"], conditional), False, resource))
            elif "NotAction" in st:
                allows.append((strings_in(st["NotAction"], conditional), True, resource))
    if conditional:
        notes.append("some grants depend on Fn::If (" + ", ".join(sorted(set(conditional)))
                     + "); both branches count")
    return allows, notes


def names_resource(resource, target):
    """Whether a statement's Resource value covers the resource with logical ID `target`
    (None: any resource)."""
    if target is None:
        return True
    if isinstance(resource, list):
        return any(names_resource(r, target) for r in resource)
    if isinstance(resource, str):
        return resource == "*"
    if isinstance(resource, dict):
        if logical_id(resource) == target:
            return True
        if "Fn::If" in resource:
            return any(names_resource(r, target) for r in resource["Fn::If"][1:])
        sub = resource.get("Fn::Sub")
        text = sub[0] if isinstance(sub, list) and sub else sub
        if isinstance(text, str):
            return f"${{{target}.Arn}}" in text or f"${{{target}}}" in text
    return False


def function_env(resources, function_id):
    props = resources[function_id].get("Properties") or {}
    return ((props.get("Environment") or {}).get("Variables")) or {}


def pattern(action_glob):
    """IAM action pattern (* and ?, case-insensitive) as a compiled regex."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in action_glob)
    return re.compile("".join(parts), re.IGNORECASE)


def is_granted(action, allows, target=None):
    """Whether an Allow statement grants `action`, on the resource `target` when given."""
    for patterns, is_not_action, resource in allows:
        matched = any(pattern(p).fullmatch(action) for p in patterns)
        if matched != is_not_action and names_resource(resource, target):
            return True
    return False


# --- Code side -----------------------------------------------------------------------------------

RAW_STRING = re.compile(r'b?r(#*)"')
CHAR_LITERAL = re.compile(r"'(\\(u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'")


def blank_comments_and_strings(src):
    """`src` with comments and string/char literal contents replaced by spaces (newlines kept),
    so offsets and line numbers are unchanged and nothing inside them looks like code."""
    out = list(src)
    i, n = 0, len(src)

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif (m := RAW_STRING.match(src, i)) and not (i and (src[i - 1].isalnum() or src[i - 1] == "_")):
            end = src.find('"' + m.group(1), m.end())
            end = n if end < 0 else end + 1 + len(m.group(1))
            blank(m.end(), end - 1 - len(m.group(1)))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            blank(i + 1, j)
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{..}'), else a lifetime or label ('a).
            m = CHAR_LITERAL.match(src, i)
            if m:
                blank(i + 1, m.end() - 1)
                i = m.end()
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def block_end(text, start):
    """Index just past the `}` matching the first `{` at or after `start` (blanked text)."""
    depth, j = 0, text.find("{", start)
    if j < 0:
        return len(text)
    while j < len(text):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return len(text)


CFG_TEST = re.compile(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*")
MOD_DECL = re.compile(r"(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;")


def strip_test_code(text, path, test_files):
    """Blanks #[cfg(test)] items; records the files of #[cfg(test)] `mod name;` declarations."""
    out = list(text)
    for m in CFG_TEST.finditer(text):
        decl = MOD_DECL.match(text, m.end())
        if decl:
            base = path.parent if path.name in ("mod.rs", "lib.rs", "main.rs") else path.with_suffix("")
            test_files.add(base / f"{decl.group(1)}.rs")
            test_files.add(base / decl.group(1))  # a folder module, with everything in it
            continue
        semicolon, brace = text.find(";", m.end()), text.find("{", m.end())
        if brace < 0 or (0 <= semicolon < brace):
            continue  # e.g. #[cfg(test)] use ...;
        for k in range(m.start(), block_end(text, m.end())):
            if out[k] != "\n":
                out[k] = " "
    return "".join(out)


IMPL = re.compile(r"\bimpl\b(?:\s*<[^{;]*?>)?\s+(?:[\w:<>, ]+?\s+for\s+)?(?:[\w]+::)*(\w+)[^{;]*\{")


def impl_blocks(text):
    """[(start, end, self type name)] of the impl blocks in blanked text."""
    return [(m.start(), block_end(text, m.end() - 1), m.group(1)) for m in IMPL.finditer(text)]


CALL = re.compile(r"\.\s*([a-z][a-z0-9_]*)\s*\(")
SEND = re.compile(r"\.\s*(send|into_paginator|presigned|customize)\s*\(")
VERSION_ID = re.compile(r"\.\s*version_id\s*\(\s*[^)\s]")


def sdk_calls(src_dir, table):
    """([(path, line, operation, service, versioned, impl type)] for every SDK operation call in
    src_dir, {impl type names in src_dir})."""
    by_name = {}
    for service, ops in table.items():
        for op in ops:
            by_name.setdefault(op, []).append(service)
    files = sorted(Path(src_dir).rglob("*.rs"))
    texts, test_files = {}, set()
    for path in files:
        texts[path] = strip_test_code(
            blank_comments_and_strings(path.read_text(encoding="utf-8")), path, test_files)
    calls, types = [], set()
    for path in files:
        if any(path == t or t in path.parents for t in test_files):
            continue
        text = texts[path]
        impls = impl_blocks(text)
        types.update(name for _, _, name in impls)
        for m in CALL.finditer(text):
            services = by_name.get(m.group(1))
            if not services:
                continue
            if len(services) > 1:
                # The same name in two services: the crate the file uses decides, else both.
                used = [s for s in services if f"aws_sdk_{s}" in text]
                services = used or services
            send = SEND.search(text, m.end())
            request = text[m.end(): send.start() if send else m.end() + 2000]
            line = text.count("\n", 0, m.start()) + 1
            inside = [name for start, end, name in impls if start <= m.start() < end]
            impl_type = inside[-1] if inside else None
            for service in services:
                calls.append((path, line, m.group(1), service, bool(VERSION_ID.search(request)),
                              impl_type))
    return calls, types


def actions_for(op, service, versioned, table):
    actions = list(table[service][op])
    if service == "s3" and versioned:
        actions += S3_VERSIONED.get(op, [])
    return actions


# --- Maintenance: the table against the installed SDK crates --------------------------------------

def compare_sdk(table):
    cargo_home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    missing, found_any = [], False
    for service, ops in table.items():
        dirs = sorted(glob.glob(f"{cargo_home}/registry/src/*/aws-sdk-{service}-[0-9]*/src/operation"))
        for d in dirs:
            found_any = True
            installed = {p.name for p in Path(d).iterdir() if p.is_dir()}
            crate = Path(d).parent.parent.name
            for op in sorted(installed - set(ops)):
                missing.append(f"{crate}: operation {op} is not in scripts/check-iam.py's table")
            for op in sorted(set(ops) - installed):
                print(f"{crate}: (note) table operation {op} is not in this crate version")
    if not found_any:
        sys.exit(f"check-iam: no aws-sdk-{{s3,sqs,secretsmanager}} crates under {cargo_home}/registry/src")
    for line in missing:
        print(line, file=sys.stderr)
    print("check-iam --compare-sdk: " + ("FAILED" if missing else "OK, the table covers the installed crates"))
    return 1 if missing else 0


# --- Main ----------------------------------------------------------------------------------------

def rel(path):
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("template", nargs="?", default=str(REPO / "template.yaml"))
    parser.add_argument("--src", default=str(REPO / "src"))
    parser.add_argument("--function", help="logical ID of the function (if the template has several)")
    parser.add_argument("--compare-sdk", action="store_true",
                        help="compare the operation table with the SDK crates in the cargo registry")
    args = parser.parse_args()
    table = operation_table()
    if args.compare_sdk:
        return compare_sdk(table)

    template = load_template(args.template)
    resources = template.get("Resources") or {}
    function_id, role_id = function_role(resources, args.function)
    allows, notes = granted(resources, role_id)
    env = function_env(resources, function_id)
    template_name = rel(args.template)
    problems = []

    calls, types = sdk_calls(args.src, table)
    # impl type -> (environment variable, queue logical ID) for step 3.
    queues = {}
    for impl_type, variable in QUEUE_OF_TYPE.items():
        if impl_type not in types:
            problems.append(f"scripts/check-iam.py: QUEUE_OF_TYPE names {impl_type}, which has no "
                            f"impl in {rel(args.src)}/ any more: update the table")
            continue
        queue = logical_id(env.get(variable))
        if queue not in resources or resources[queue].get("Type") != "AWS::SQS::Queue":
            problems.append(f"{template_name}: {function_id}'s environment variable {variable} "
                            "is not a Ref to an SQS queue of the template (QUEUE_OF_TYPE)")
            continue
        queues[impl_type] = (variable, queue)

    needed = {}  # (action, queue or None) -> [(path, line, op)]
    for path, line, op, service, versioned, impl_type in calls:
        if service == "s3" and op in S3_UNVERIFIED:
            notes.append(f"{rel(path)}:{line}: {op} -> {', '.join(table[service][op])} is derived "
                         "from the operation's name, not verified against AWS's reference")
        target = queues.get(impl_type) if service == "sqs" else None
        for action in actions_for(op, service, versioned, table):
            needed.setdefault((action, target), []).append((path, line, op))

    for note in notes:
        print(f"check-iam: note: {note}", file=sys.stderr)
    missing = sorted((k for k in needed if not is_granted(k[0], allows, k[1] and k[1][1])),
                     key=lambda k: (k[0], k[1] or ()))
    for action, target in missing:
        sites = needed[(action, target)]
        first, rest = sites[0], sites[1:]
        on = f" on {target[1]} ({target[0]})" if target else ""
        also = ""
        if rest:
            also = " (also called at " + ", ".join(f"{rel(p)}:{l}" for p, l, _ in rest) + ")"
        problems.append(f"{rel(first[0])}:{first[1]}: {first[2]}() needs {action}{on}, which "
                        f"{role_id} ({function_id}'s role) is not granted in {template_name}{also}")
    for p in problems:
        print(p)
    if problems:
        other = len(problems) - len(missing)
        print(f"check-iam: FAILED ({len(missing)} of {len(needed)} needed grants missing"
              + (f", {other} other problem(s)" if other else "") + ")", file=sys.stderr)
        return 1
    actions = sorted({a for a, _ in needed})
    checked_queues = sorted({t[1] for _, t in needed if t})
    print(f"check-iam: OK ({role_id} grants the {len(actions)} IAM actions of {len(calls)} SDK "
          f"calls in {rel(args.src)}/, SQS ones on {' and '.join(checked_queues) or 'no queue'} "
          f"where known: {', '.join(actions)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
