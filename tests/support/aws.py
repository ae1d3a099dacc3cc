"""Test helper around moto's server: create a Firehose delivery stream writing to S3 or a Kinesis
data stream, and read back what arrived.
Usage: aws.py ENDPOINT create BUCKET STREAM | aws.py ENDPOINT read BUCKET
       aws.py ENDPOINT kinesis-create STREAM SHARDS | aws.py ENDPOINT kinesis-read STREAM"""
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
elif action == "kinesis-create":
    k = boto3.client("kinesis", **kw)
    k.create_stream(StreamName=bucket, ShardCount=int(sys.argv[4]))
    k.get_waiter("stream_exists").wait(StreamName=bucket)
elif action == "kinesis-read":
    k = boto3.client("kinesis", **kw)
    shards = k.describe_stream(StreamName=bucket)["StreamDescription"]["Shards"]
    for shard in shards:
        it = k.get_shard_iterator(StreamName=bucket, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            out = k.get_records(ShardIterator=it, Limit=10000)
            for r in out["Records"]:
                sys.stdout.buffer.write(r["Data"])
            if not out["Records"]:
                break
            it = out.get("NextShardIterator")
elif action == "read":
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objects += page.get("Contents", [])
    for o in sorted(objects, key=lambda o: (o["LastModified"], o["Key"])):
        sys.stdout.buffer.write(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
