#!/usr/bin/env python3
"""Creates template.yaml's AWS resources in a local moto server and prints the functions' env vars.

Every DynamoDB table, SQS queue (with its redrive policy), KMS key and alias, EventBridge bus and
Secrets Manager secret in the template is created from its own properties; each secret gets the dev
value given for the environment variable that names it (--webhook-secret for WEBHOOK_SECRETS_ARN,
--platform-key for PLATFORM_KEY_SECRET_ARN, --state-key for STATE_KEY_SECRET_ARN). The output maps each function environment variable
that points at one of these (e.g. TABLE_NAME: !Ref StripeTable) to the local value, plus
<NAME>_DLQ_URL for every queue variable whose queue has a dead-letter queue.

    .venv/bin/python infra/provision.py --endpoint http://127.0.0.1:5005 [--suffix t1]

Re-running against the same server reuses what exists. Dummy credentials, region us-east-1.
"""

from __future__ import annotations

import argparse
import json
import shlex
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cfn_template import (  # noqa: E402
    DEFAULT_TEMPLATE,
    Resolver,
    Unresolved,
    function_properties,
    load_template,
    references,
    serverless_functions,
)

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
DEV_WEBHOOK_SECRET = "whsec_dev_local_webhook_secret"
DEV_PLATFORM_KEY = "sk_test_dev_local_platform_key"
DEV_STATE_KEY = "dev-local-state-signing-key-0123456789abcdef"


class ProvisionError(Exception):
    pass


class Provisioner:
    """Creates supported resources on demand, dependencies first, and remembers their attributes."""

    def __init__(self, template: dict, clients: "Clients", stack_name: str, secret_values: dict[str, str],
                 visibility_timeout: int | None = None):
        self.template = template
        self.visibility_timeout = visibility_timeout
        self.resources: dict = template["Resources"]
        self.clients = clients
        self.stack_name = stack_name
        self.secret_values = secret_values
        self.created: dict[str, dict] = {}
        self._in_progress: set[str] = set()
        self.handlers = {
            "AWS::DynamoDB::Table": self._table,
            "AWS::SQS::Queue": self._queue,
            "AWS::KMS::Key": self._key,
            "AWS::KMS::Alias": self._alias,
            "AWS::Events::EventBus": self._event_bus,
            "AWS::SecretsManager::Secret": self._secret,
        }
        pseudo = {
            "AWS::StackName": stack_name,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
        }
        params = {name: spec["Default"] for name, spec in (template.get("Parameters") or {}).items() if "Default" in spec}
        self.params = params
        self.resolver = Resolver(params, pseudo, self.lookup)

    # ------------------------------------------------------------------ driving
    def provision_all(self) -> None:
        for logical_id, resource in self.resources.items():
            if resource.get("Type") in self.handlers:
                self.ensure(logical_id)

    def provisioned_ids(self) -> set[str]:
        return set(self.created)

    def lookup(self, logical_id: str, attribute: str | None):
        resource = self.resources.get(logical_id)
        if resource is None or resource.get("Type") not in self.handlers:
            raise Unresolved(f"{logical_id} is not a resource created locally")
        attrs = self.ensure(logical_id)
        key = attribute or "Ref"
        if attrs.get(key) is None:
            raise Unresolved(f"{logical_id}.{key} has no local value")
        return attrs[key]

    def ensure(self, logical_id: str) -> dict:
        if logical_id in self.created:
            return self.created[logical_id]
        if logical_id in self._in_progress:
            raise ProvisionError(f"circular reference through {logical_id}")
        self._in_progress.add(logical_id)
        resource = self.resources[logical_id]
        try:
            attrs = self.handlers[resource["Type"]](logical_id, resource.get("Properties") or {})
        except Unresolved as exc:
            raise ProvisionError(f"{logical_id}: {exc}") from exc
        self._in_progress.discard(logical_id)
        self.created[logical_id] = attrs
        return attrs

    def _resolve(self, value):
        return self.resolver.resolve(value)

    def _name(self, logical_id: str, explicit) -> str:
        if explicit is not None:
            return str(self._resolve(explicit))
        return f"{self.stack_name}-{logical_id}"

    # ------------------------------------------------------------------ DynamoDB
    def _table(self, logical_id: str, props: dict) -> dict:
        ddb = self.clients.get("dynamodb")
        name = self._name(logical_id, props.get("TableName"))
        billing = self._resolve(props.get("BillingMode", "PROVISIONED"))

        def throughput(spec):
            if billing == "PAY_PER_REQUEST":
                return {}
            spec = self._resolve(spec) or {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
            return {"ProvisionedThroughput": {k: int(v) for k, v in spec.items()}}

        def index(spec: dict, provisioned: bool) -> dict:
            spec = self._resolve(spec)
            out = {"IndexName": spec["IndexName"], "KeySchema": spec["KeySchema"], "Projection": spec["Projection"]}
            if provisioned:
                out.update(throughput(spec.get("ProvisionedThroughput")))
            return out

        kwargs = {
            "TableName": name,
            "KeySchema": self._resolve(props["KeySchema"]),
            "AttributeDefinitions": self._resolve(props["AttributeDefinitions"]),
            "BillingMode": billing,
        }
        kwargs.update(throughput(props.get("ProvisionedThroughput")))
        if props.get("GlobalSecondaryIndexes"):
            kwargs["GlobalSecondaryIndexes"] = [index(g, True) for g in props["GlobalSecondaryIndexes"]]
        if props.get("LocalSecondaryIndexes"):
            kwargs["LocalSecondaryIndexes"] = [index(i, False) for i in props["LocalSecondaryIndexes"]]
        stream = self._resolve(props.get("StreamSpecification"))
        if stream:
            kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
        try:
            ddb.create_table(**kwargs)
        except ddb.exceptions.ResourceInUseException:
            pass  # already provisioned on this server
        table = ddb.describe_table(TableName=name)["Table"]

        ttl = self._resolve(props.get("TimeToLiveSpecification"))
        if ttl and str(ttl.get("Enabled")).lower() == "true":
            current = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
                ddb.update_time_to_live(
                    TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
                )
        return {"Ref": name, "Arn": table["TableArn"], "StreamArn": table.get("LatestStreamArn")}

    # ------------------------------------------------------------------ SQS
    _QUEUE_ATTRIBUTES = (
        "DelaySeconds",
        "MaximumMessageSize",
        "MessageRetentionPeriod",
        "ReceiveMessageWaitTimeSeconds",
        "VisibilityTimeout",
        "FifoQueue",
        "ContentBasedDeduplication",
        "SqsManagedSseEnabled",
    )

    def _queue(self, logical_id: str, props: dict) -> dict:
        sqs = self.clients.get("sqs")
        attributes: dict[str, str] = {}
        for key in self._QUEUE_ATTRIBUTES:
            if key in props:
                value = self._resolve(props[key])
                attributes[key] = str(value).lower() if isinstance(value, bool) else str(value)
        if self.visibility_timeout is not None:
            attributes["VisibilityTimeout"] = str(self.visibility_timeout)
        redrive = self._resolve(props.get("RedrivePolicy"))
        if redrive:
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": redrive["deadLetterTargetArn"], "maxReceiveCount": int(redrive["maxReceiveCount"])}
            )
        name = self._name(logical_id, props.get("QueueName"))
        if attributes.get("FifoQueue") == "true" and not name.endswith(".fifo"):
            name += ".fifo"
        try:
            url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        except sqs.exceptions.QueueNameExists:
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            sqs.set_queue_attributes(QueueUrl=url, Attributes={k: v for k, v in attributes.items() if k != "FifoQueue"})
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return {"Ref": url, "QueueUrl": url, "Arn": arn, "QueueName": name, "_redrive": bool(redrive)}

    # ------------------------------------------------------------------ KMS
    def _aliases_for(self, logical_id: str) -> list[str]:
        names = []
        for resource in self.resources.values():
            if resource.get("Type") == "AWS::KMS::Alias":
                props = resource.get("Properties") or {}
                if logical_id in references(props.get("TargetKeyId")):
                    names.append(str(self._resolve(props["AliasName"])))
        return names

    def _key(self, logical_id: str, props: dict) -> dict:
        kms = self.clients.get("kms")
        wanted = set(self._aliases_for(logical_id))
        if wanted:  # reuse the key an alias already names on this server
            for alias in kms.list_aliases()["Aliases"]:
                if alias["AliasName"] in wanted and alias.get("TargetKeyId"):
                    meta = kms.describe_key(KeyId=alias["TargetKeyId"])["KeyMetadata"]
                    return {"Ref": meta["KeyId"], "KeyId": meta["KeyId"], "Arn": meta["Arn"]}
        kwargs = {
            "Description": str(self._resolve(props.get("Description", logical_id))),
            "KeyUsage": self._resolve(props.get("KeyUsage", "ENCRYPT_DECRYPT")),
            "KeySpec": self._resolve(props.get("KeySpec", "SYMMETRIC_DEFAULT")),
        }
        meta = kms.create_key(**kwargs)["KeyMetadata"]
        if str(self._resolve(props.get("EnableKeyRotation", False))).lower() == "true":
            kms.enable_key_rotation(KeyId=meta["KeyId"])
        return {"Ref": meta["KeyId"], "KeyId": meta["KeyId"], "Arn": meta["Arn"]}

    def _alias(self, logical_id: str, props: dict) -> dict:
        kms = self.clients.get("kms")
        name = str(self._resolve(props["AliasName"]))
        target = str(self._resolve(props["TargetKeyId"]))
        try:
            kms.create_alias(AliasName=name, TargetKeyId=target)
        except kms.exceptions.AlreadyExistsException:
            kms.update_alias(AliasName=name, TargetKeyId=target)
        return {"Ref": name}

    # ------------------------------------------------------------------ EventBridge
    def _event_bus(self, logical_id: str, props: dict) -> dict:
        events = self.clients.get("events")
        name = self._name(logical_id, props.get("Name"))
        try:
            events.create_event_bus(Name=name)
        except events.exceptions.ResourceAlreadyExistsException:
            pass
        arn = events.describe_event_bus(Name=name)["Arn"]
        return {"Ref": name, "Name": name, "Arn": arn}

    # ------------------------------------------------------------------ Secrets Manager
    def _secret(self, logical_id: str, props: dict) -> dict:
        """The secret with the dev value of the env var(s) naming it (one value, or an error)."""
        sm = self.clients.get("secretsmanager")
        names = sorted(
            name
            for function in serverless_functions(self.template)
            for name, expr in ((function_properties(self.template, function).get("Environment") or {}).get("Variables") or {}).items()
            if logical_id in references(expr)
        )
        values = {self.secret_values[n] for n in names if n in self.secret_values}
        if len(values) != 1:
            raise ProvisionError(
                f"{logical_id}: no single dev value for the variables naming it ({', '.join(names) or 'none'}); "
                f"known: {', '.join(sorted(self.secret_values))}"
            )
        body = values.pop()
        name = self._name(logical_id, props.get("Name"))
        try:
            arn = sm.create_secret(Name=name, SecretString=body)["ARN"]
        except sm.exceptions.ResourceExistsException:
            sm.put_secret_value(SecretId=name, SecretString=body)
            arn = sm.describe_secret(SecretId=name)["ARN"]
        return {"Ref": arn, "Id": arn}

    # ------------------------------------------------------------------ output
    def environment(self) -> dict[str, str]:
        """Function env vars that point at a locally created resource, plus <X>_DLQ_URL per redriven queue."""
        local = self.provisioned_ids()
        env: dict[str, str] = {}
        sources: dict[str, str] = {}
        for function in serverless_functions(self.template):
            variables = (function_properties(self.template, function).get("Environment") or {}).get("Variables") or {}
            for name, expr in variables.items():
                refs = references(expr)
                if not refs or not refs <= local:
                    continue
                value = str(self._resolve(expr))
                if name in env and env[name] != value:
                    raise ProvisionError(f"{name} differs between {sources[name]} and {function}")
                env[name] = value
                sources[name] = function
                for target in refs:
                    attrs = self.created.get(target, {})
                    if attrs.get("_redrive") and value == attrs.get("Ref"):
                        env[_dlq_var(name)] = self._dead_letter_url(target)
        return dict(sorted(env.items()))

    def _dead_letter_url(self, queue_id: str) -> str:
        redrive = (self.resources[queue_id].get("Properties") or {})["RedrivePolicy"]
        (dlq_id,) = references(redrive["deadLetterTargetArn"])
        return self.created[dlq_id]["Ref"]


class Clients:
    """boto3 clients for the local endpoint, made on first use (each costs ~50 ms)."""

    def __init__(self, endpoint: str):
        import boto3
        from botocore.config import Config

        self._session = boto3.session.Session(
            aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION
        )
        self._config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=2, read_timeout=15)
        self._endpoint = endpoint
        self._clients: dict = {}

    def get(self, service: str):
        if service not in self._clients:
            self._clients[service] = self._session.client(service, endpoint_url=self._endpoint, config=self._config)
        return self._clients[service]


def _dlq_var(name: str) -> str:
    if name.endswith("_QUEUE_URL"):
        return name[: -len("_QUEUE_URL")] + "_DLQ_URL"
    return name + "_DLQ"


def _wait_for(endpoint: str, seconds: float) -> None:
    parsed = urlparse(endpoint)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or (443 if parsed.scheme == "https" else 80)
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise ProvisionError(f"nothing listens on {host}:{port}")
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", required=True, help="moto server URL, e.g. http://127.0.0.1:5005")
    parser.add_argument("--suffix", default="", help="appended to the stack name, to isolate parallel tests")
    parser.add_argument("--stack-name", default="stripe-sync-local", help="stands in for AWS::StackName")
    parser.add_argument("--template", default=str(DEFAULT_TEMPLATE))
    parser.add_argument("--webhook-secret", default=DEV_WEBHOOK_SECRET, help="comma-separated whsec_ list")
    parser.add_argument("--platform-key", default=DEV_PLATFORM_KEY, help="Stripe platform secret key (sk_test_...)")
    parser.add_argument("--state-key", default=DEV_STATE_KEY, help="OAuth state signing key")
    parser.add_argument("--format", choices=("json", "shell"), default="json", help="json object or export lines")
    parser.add_argument("--visibility-timeout", type=int, default=None,
                        help="override every queue's VisibilityTimeout (seconds), so local redrive tests run fast")
    parser.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the endpoint to listen")
    args = parser.parse_args(argv)

    stack = f"{args.stack_name}-{args.suffix}" if args.suffix else args.stack_name
    secret_values = {  # by the environment variable that names the secret
        "PLATFORM_KEY_SECRET_ARN": args.platform_key,
        "WEBHOOK_SECRETS_ARN": args.webhook_secret,
        "STATE_KEY_SECRET_ARN": args.state_key,
    }
    try:
        _wait_for(args.endpoint, args.wait)
        provisioner = Provisioner(
            load_template(args.template), Clients(args.endpoint), stack, secret_values, args.visibility_timeout
        )
        provisioner.provision_all()
        env = provisioner.environment()
    except ProvisionError as exc:
        print(f"provision: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # boto/moto errors: one readable line, not a traceback
        print(f"provision: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1

    if args.format == "shell":
        print("\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items()))
    else:
        print(json.dumps(env, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
