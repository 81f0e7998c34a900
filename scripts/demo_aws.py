"""Demo helper: local S3/SQS set-up through moto, and a readable summary of a run.

Usage:
  demo_aws.py setup    BUCKET KEY   -> creates bucket + dead-letter queue, uploads a sample
                                      export to KEY, prints the queue URL
  demo_aws.py summary  BUCKET RESPONSE_JSON EMULATOR_URL DLQ_URL [REPEAT_RESPONSE_JSON]
"""
import gzip
import io
import json
import os
import sys
import urllib.request

import boto3


def clients():
    kw = dict(endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    return boto3.client("s3", **kw), boto3.client("sqs", **kw)


def sample_export() -> bytes:
    """300 users, plus three rows MoEngage would refuse, to show rejections with reasons."""
    out = io.StringIO()
    out.write("user_id,email,first_name,last_name,city,country,plan,signup_date\n")
    cities = [("Berlin", "DE"), ("Pune", "IN"), ("Austin", "US"), ("Lyon", "FR"), ("Osaka", "JP")]
    for i in range(1, 301):
        city, country = cities[i % len(cities)]
        plan = "pro" if i % 3 == 0 else "free"
        out.write(f"user-{i:04d},user{i}@example.com,First{i},Last{i},{city},{country},{plan},2026-0{1 + i % 9}-1{i % 10}\n")
    out.write("guest,guest@example.com,Guest,User,Berlin,DE,free,2026-01-01\n")  # placeholder id
    out.write(",noid@example.com,No,Id,Pune,IN,free,2026-01-01\n")  # missing id
    out.write("user-9999,short@example.com,Short\n")  # wrong number of fields
    return gzip.compress(out.getvalue().encode())


def setup(bucket: str, key: str) -> None:
    s3, sqs = clients()
    s3.create_bucket(Bucket=bucket)
    queue = sqs.create_queue(QueueName="moengage-sync-dlq")["QueueUrl"]
    s3.put_object(Bucket=bucket, Key=key, Body=sample_export())
    print(queue)


def summary(bucket: str, response_path: str, emulator_url: str, dlq_url: str, repeat_path: str = "") -> None:
    s3, sqs = clients()
    with open(response_path) as f:
        response = json.load(f)
    with urllib.request.urlopen(f"{emulator_url}/_emulator/state") as r:
        state = json.load(r)
    print()
    print("=" * 72)
    print("moengage-sync demo: what happened")
    print("=" * 72)
    for obj in response.get("objects", []):
        print(f"object   s3://{obj['bucket']}/{obj['key']}  ->  {obj['status'].upper()}")
        print(f"  rows read           {obj['rows_read']:>8}")
        print(f"  delivered           {obj['rows_delivered']:>8}")
        print(f"  unchanged           {obj['rows_unchanged']:>8}")
        print(f"  rejected            {obj['rows_rejected']:>8}")
        print(f"  dead-lettered       {obj['rows_dead_lettered']:>8}")
        print(f"  pending             {obj['rows_pending']:>8}")
        print(f"  requests sent       {obj['requests_sent']:>8}")
        if obj.get("error"):
            print(f"  error: {obj['error']}")
        if obj.get("report"):
            rb, rk = obj["report"][len("s3://"):].split("/", 1)
            report = json.loads(s3.get_object(Bucket=rb, Key=rk)["Body"].read())
            print(f"  run report          {obj['report']}")
            for rej in report.get("rejected_rows", [])[:10]:
                col = rej.get("column") or "-"
                print(f"    rejected row {rej['row']} (line {rej.get('line', '?')}), column {col}: {rej['reason']}")
    for note in response.get("notes", []):
        print(f"note: {note}")
    print()
    print("MoEngage emulator received:")
    print(f"  requests            {len(state['requests']):>8}  ({', '.join(sorted({r['path'] for r in state['requests']}))})")
    print(f"  users stored        {len(state['users']):>8}")
    print(f"  events stored       {len(state['events']):>8}")
    print(f"  silently dropped    {len(state['dropped']):>8}  (what real MoEngage would have thrown away)")
    if state["users"]:
        cid = sorted(state["users"])[0]
        print(f"  e.g. user {cid}: {json.dumps(state['users'][cid])}")
    attrs = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
    print(f"dead-letter queue     {attrs['Attributes']['ApproximateNumberOfMessages']:>8} messages")
    if repeat_path:
        with open(repeat_path) as f:
            repeat = json.load(f)
        print()
        print(f"second delivery of the same notification: {len(repeat.get('objects', []))} objects processed")
        for note in repeat.get("notes", []):
            print(f"  note: {note}")
    print("=" * 72)
    bad = [o for o in response.get("objects", []) if o["status"] != "complete"]
    sys.exit(1 if bad or not response.get("objects") else 0)


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"setup": setup, "summary": summary}[cmd](*args)
