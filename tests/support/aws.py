"""Test helper around moto's server: create a Firehose delivery stream writing to S3 or a Kinesis
data stream, and read back what arrived.
Usage: aws.py ENDPOINT create BUCKET STREAM | aws.py ENDPOINT read BUCKET
       aws.py ENDPOINT kinesis-create STREAM SHARDS | aws.py ENDPOINT kinesis-read STREAM
       aws.py ENDPOINT kinesis-deaggregate STREAM | aws.py ENDPOINT ec2-instance KEY=VALUE...
       aws.py ENDPOINT logs-create GROUP STREAM | aws.py ENDPOINT logs-read GROUP [STREAM]
logs-read prints every event of the group (of one stream when named) as a JSON line
{"stream", "timestamp", "message"}, each stream's events in the order GetLogEvents returns them.
ec2-instance runs an instance with these tags (in us-east-1) and prints its id.
kinesis-deaggregate prints one JSON document: the number of Kinesis records per shard, and every
user record after de-aggregation with the KPL's own library (PyPI aws-kinesis-agg) as
[shard, partition key, base64 data, whether it came from an aggregate]."""
import base64
import importlib.util
import json
import os
import sys

import boto3

endpoint, action, bucket = sys.argv[1], sys.argv[2], sys.argv[3]
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
s3 = boto3.client("s3", **kw)
if action == "create":
    s3.create_bucket(Bucket=bucket)
    boto3.client("firehose", **kw).create_delivery_stream(
        DeliveryStreamName=sys.argv[4],
        ExtendedS3DestinationConfiguration={"BucketARN": f"arn:aws:s3:::{bucket}", "RoleARN": "arn:aws:iam::123456789012:role/firehose"},
    )
elif action == "ec2-instance":
    ec2 = boto3.client("ec2", **kw)
    image = ec2.describe_images()["Images"][0]["ImageId"]
    tags = [dict(zip(("Key", "Value"), t.split("=", 1))) for t in sys.argv[3:]]
    spec = [{"ResourceType": "instance", "Tags": tags}]
    print(ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, TagSpecifications=spec)["Instances"][0]["InstanceId"])
elif action == "kinesis-create":
    k = boto3.client("kinesis", **kw)
    k.create_stream(StreamName=bucket, ShardCount=int(sys.argv[4]))
    k.get_waiter("stream_exists").wait(StreamName=bucket)
elif action in ("kinesis-read", "kinesis-deaggregate"):
    k = boto3.client("kinesis", **kw)
    shards = k.describe_stream(StreamName=bucket)["StreamDescription"]["Shards"]
    per_shard, user = {}, []
    if action == "kinesis-deaggregate":
        # the package imports its generated modules by their bare names
        sys.path.insert(0, os.path.dirname(importlib.util.find_spec("aws_kinesis_agg").origin))
        from aws_kinesis_agg.deaggregator import iter_deaggregate_records
    for shard in shards:
        sid = shard["ShardId"]
        per_shard[sid] = 0
        it = k.get_shard_iterator(StreamName=bucket, ShardId=sid, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            out = k.get_records(ShardIterator=it, Limit=10000)
            for r in out["Records"]:
                per_shard[sid] += 1
                if action == "kinesis-read":
                    sys.stdout.buffer.write(r["Data"])
                    continue
                record = {"kinesis": {"kinesisSchemaVersion": "1.0", "data": base64.b64encode(r["Data"]),
                                      "partitionKey": r["PartitionKey"], "sequenceNumber": r["SequenceNumber"],
                                      "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp()}}
                for u in iter_deaggregate_records([record]):
                    data = u["kinesis"]["data"]
                    user.append([sid, u["kinesis"]["partitionKey"], data.decode() if isinstance(data, bytes) else data,
                                 u["kinesis"].get("aggregated", False)])
            if not out["Records"]:
                break
            it = out.get("NextShardIterator")
    if action == "kinesis-deaggregate":
        print(json.dumps({"per_shard": per_shard, "user": user}))
elif action == "logs-create":
    logs = boto3.client("logs", **kw)
    try:
        logs.create_log_group(logGroupName=bucket)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    logs.create_log_stream(logGroupName=bucket, logStreamName=sys.argv[4])
elif action == "logs-read":
    logs = boto3.client("logs", **kw)
    try:
        streams = [s["logStreamName"] for s in logs.describe_log_streams(logGroupName=bucket)["logStreams"]]
    except logs.exceptions.ResourceNotFoundException:
        streams = []
    for stream in streams if len(sys.argv) < 5 else [sys.argv[4]]:
        token = None
        while True:
            args = dict(logGroupName=bucket, logStreamName=stream, startFromHead=True, limit=10000)
            if token:
                args["nextToken"] = token
            out = logs.get_log_events(**args)
            for e in out["events"]:
                print(json.dumps({"stream": stream, "timestamp": e["timestamp"], "message": e["message"]}))
            if not out["events"] or out.get("nextForwardToken") == token:
                break
            token = out.get("nextForwardToken")
    if len(sys.argv) < 5:
        group = logs.describe_log_groups(logGroupNamePrefix=bucket)["logGroups"]
        print(json.dumps({"group": bucket, "retention": [g.get("retentionInDays") for g in group if g["logGroupName"] == bucket]}))
elif action == "read":
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objects += page.get("Contents", [])
    for o in sorted(objects, key=lambda o: (o["LastModified"], o["Key"])):
        sys.stdout.buffer.write(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
