"""moto_serial's patches answer what moto's own code does: queue counts on a queue holding visible,
in-flight and delayed messages (and a receive still hands out only visible ones), and Queries on a
table's key (pages, both orders, sort-key conditions, filters, an index) on a table of several
partitions.

    .venv/bin/python infra/test_moto_serial.py
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

import moto_serial  # noqa: E402

COUNTS = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


def observe():
    """Sends 30 messages (5 delayed), receives 7 of them, then a second receive: the counts
    after the first receive and the number of messages the second one got."""
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        for i in range(25):
            sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
        for i in range(5):
            sqs.send_message(QueueUrl=url, MessageBody=f"d{i}", DelaySeconds=600)
        first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=7, VisibilityTimeout=600)
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=COUNTS)["Attributes"]
        second = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600)
        bodies = {m["Body"] for m in first["Messages"]} | {m["Body"] for m in second["Messages"]}
        return {k: attrs[k] for k in COUNTS}, len(first["Messages"]), len(second["Messages"]), bodies


class QueueScans(unittest.TestCase):
    def test_the_patched_counts_equal_motos_own(self):
        stock = observe()
        moto_serial.patch_queue_scans()
        patched = observe()
        self.assertEqual(stock[:3], patched[:3])
        counts, first, second, bodies = patched
        self.assertEqual(counts, {COUNTS[0]: "18", COUNTS[1]: "7", COUNTS[2]: "5"})
        self.assertEqual((first, second), (7, 10))
        # Neither receive handed out a delayed message or one already in flight.
        self.assertEqual(len(bodies), 17)
        self.assertFalse(any(b.startswith("d") for b in bodies))


def queries():
    """Every answer of a set of Queries, pages followed, on a table of three partitions."""
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
                {"AttributeName": "g", "AttributeType": "S"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "by_g",
                    "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        for p in ["A", "B", "C"]:
            for i in range(40):
                item = {"pk": {"S": p}, "sk": {"S": f"K#{i:03}"}, "n": {"N": str(i)}}
                if i % 3 == 0:
                    item["g"] = {"S": "g1"}
                ddb.put_item(TableName="t", Item=item)
        asks = [
            {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "B"}}},
            {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "B"}}, "Limit": 7},
            {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "C"}}, "ScanIndexForward": False, "Limit": 9},
            {
                "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
                "ExpressionAttributeValues": {":p": {"S": "A"}, ":s": {"S": "K#01"}},
            },
            {
                "KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b",
                "FilterExpression": "n > :m",
                "ExpressionAttributeValues": {":p": {"S": "A"}, ":a": {"S": "K#005"}, ":b": {"S": "K#030"}, ":m": {"N": "12"}},
                "Limit": 5,
            },
            {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "Z"}}},
            {"IndexName": "by_g", "KeyConditionExpression": "g = :g", "ExpressionAttributeValues": {":g": {"S": "g1"}}, "Limit": 11},
        ]
        answers = []
        for ask in asks:
            pages, start = [], None
            while True:
                page = ddb.query(TableName="t", **ask, **({"ExclusiveStartKey": start} if start else {}))
                pages.append((page["Items"], page.get("LastEvaluatedKey")))
                start = page.get("LastEvaluatedKey")
                if not start:
                    break
            answers.append(pages)
        return answers


class PartitionQueries(unittest.TestCase):
    def test_the_patched_queries_answer_as_motos_own(self):
        stock = queries()
        moto_serial.patch_partition_queries()
        patched = queries()
        self.assertEqual(stock, patched)
        # The asks are not trivially empty: partition B has 40 items, in pages of 7.
        self.assertEqual(sum(len(items) for items, _ in patched[1]), 40)
        self.assertEqual(len(patched[1]), 6)
        self.assertEqual(patched[2][0][0][0]["sk"]["S"], "K#039")


if __name__ == "__main__":
    unittest.main()
