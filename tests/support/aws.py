"""Test helper around moto's server: create a Firehose delivery stream writing to S3, and read
back what arrived. Usage: aws.py ENDPOINT create BUCKET STREAM | aws.py ENDPOINT read BUCKET"""
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
elif action == "read":
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objects += page.get("Contents", [])
    for o in sorted(objects, key=lambda o: (o["LastModified"], o["Key"])):
        sys.stdout.buffer.write(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
