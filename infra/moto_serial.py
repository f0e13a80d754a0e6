"""moto's server, running moto's own code for one request at a time.

moto's DynamoDB transactions deep-copy the tables for rollback while other request threads may be
writing them ("dictionary changed size during iteration", answered as an HTML 500), so the stock
threaded `moto_server` fails under the concurrent writes our sync makes. Here connections are
still served by threads (an idle pooled connection never blocks anyone), but the application runs
under one lock. Python's GIL serialises moto's work anyway, so this costs little.

Those rollback copies are also the local stack's bottleneck: moto copies the whole table once per
item of every transaction, so a transaction costs O(table size). Under the lock, it is enough to
snapshot the items a transaction touches and put them back if it is cancelled, which is what
DynamoDB's all-or-nothing promise needs.

moto's SQS has the same shape of cost: every SendMessage reads the queue's attributes, which counts
visible, in-flight and delayed messages by asking each message the time (a datetime round trip per
message, three times). With the tens of thousands of messages a billing-day burst queues, intake
slowed to a few events a second. The counts below take the time once per scan and compare the
messages' own timestamps, which is the same answer at a fraction of the cost.

And every Query on a table builds a sorted copy of the whole table, then keeps the requested
partition: O(table) per request, when the webhook's account look-up and the sync's reads are
Queries. A Query on the table (not an index) here starts from its own partition; what it then
does (conditions, order, pages, filters) is moto's own code.

    python infra/moto_serial.py -H 127.0.0.1 -p 5000
"""

import argparse
import copy
import os
import threading
import types

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app


def serialised(app):
    lock = threading.Lock()

    def call(environ, start_response):
        with lock:
            # Drain the response inside the lock: moto may build it lazily.
            return list(app(environ, start_response))

    return call


def _item_key(backend, op_type, op):
    if op_type != "Put":
        return op["Key"]
    table = backend.get_table(op["TableName"])
    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = op["Item"][table.range_key_attr]
    return key


def patch_transactions() -> None:
    """Roll back cancelled transactions item by item instead of copying whole tables."""
    from moto.dynamodb import models

    original = models.DynamoDBBackend.transact_write_items
    no_copy = types.SimpleNamespace(deepcopy=lambda table, memo=None: table)

    def transact_write_items(self, transact_items):
        touched = []
        for entry in transact_items:
            op_type, op = next(iter(entry.items()))
            key = _item_key(self, op_type, op)
            current = self.get_item(op["TableName"], key)
            touched.append((op["TableName"], key, copy.deepcopy(current.to_json()["Attributes"]) if current else None))
        models.copy = no_copy
        try:
            return original(self, transact_items)
        except Exception:
            for table_name, key, attrs in reversed(touched):
                if attrs is None:
                    if self.get_item(table_name, key) is not None:
                        self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, attrs)
            raise
        finally:
            models.copy = copy

    models.DynamoDBBackend.transact_write_items = transact_write_items


def patch_queue_scans() -> None:
    """Count a queue's messages with one clock reading per scan instead of one per message."""
    from moto.core.utils import unix_time_millis
    from moto.sqs import models

    def messages(self):
        now = unix_time_millis()
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    def delayed(self):
        now = unix_time_millis()
        return sum(1 for m in self._messages if now < m.delayed_until)

    def not_visible(self):
        now = unix_time_millis()
        return sum(1 for m in self._messages if not now > m.visible_at)

    models.Queue.messages = property(messages)
    models.Queue.approximate_number_of_messages_delayed = property(delayed)
    models.Queue.approximate_number_of_messages_not_visible = property(not_visible)
    models.Queue.approximate_number_of_messages = property(lambda self: len(self.messages))


def patch_partition_queries() -> None:
    """A Query on a table's own key reads that partition instead of a sorted copy of the table."""
    from moto.dynamodb.models.table import Table

    original_query = Table.query
    original_all_items = Table.all_items

    def all_items(self):
        partition = self.__dict__.get("_query_partition")
        if partition is None:
            return original_all_items(self)
        items = self.items.get(partition)
        return sorted(items.values(), key=lambda item: item.range_key) if items else []

    def query(self, hash_key, *args, **kwargs):
        index_name = kwargs["index_name"] if "index_name" in kwargs else (args[6] if len(args) > 6 else None)
        if index_name or hash_key is None or not self.range_key_attr:
            return original_query(self, hash_key, *args, **kwargs)
        self._query_partition = hash_key
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            self._query_partition = None

    Table.all_items = all_items
    Table.query = query


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    patch_transactions()
    patch_queue_scans()
    patch_partition_queries()
    app = serialised(DomainDispatcherApplication(create_backend_app))
    run_simple(args.host, args.port, app, threaded=True, use_reloader=False, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
