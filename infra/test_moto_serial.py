"""moto_serial's queue counts answer what moto's own do, on a queue holding visible, in-flight and
delayed messages, and a receive still hands out only visible ones.

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


if __name__ == "__main__":
    unittest.main()
