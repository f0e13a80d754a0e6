#!/usr/bin/env python3
"""Checks template.yaml for what cfn-lint and `sam validate --lint` let through.

- every schedule expression is a valid EventBridge rate()/cron() (rate: positive integer, singular
  unit iff 1), and the tier schedules are exactly pro=rate(3 hours), scale=rate(30 minutes);
- SQS event sources report partial batch failures, and their queue's visibility timeout is at
  least 6x the function timeout;
- every queue redrives to a dead-letter queue that keeps messages at least as long;
- every function is arm64 / provided.al2023 / bootstrap, built by rust-cargolambda from a binary
  the workspace defines;
- function policies name exact actions, and "*" resources only for actions AWS requires it for;
- environment variable names are the contract's, and no literal secrets sit in the template;
- no function's environment names an HTTP API that routes to it through an event (CloudFormation
  rejects the circular dependency at deploy time; the linters do not see it);
- secrets: each function's environment names, and its role may GetSecretValue on, exactly the
  secrets SECRETS_READ_BY lists for its binary (the webhook never the platform key);
- operations: an Errors and a Throttles alarm per function, a 5xx alarm per HTTP API, an
  oldest-message-age alarm per work queue, a depth alarm per dead-letter queue, every alarm notifying
  AlarmTopicArn or, when that is empty, a topic the template creates; a failure destination for
  every asynchronous trigger (rule-target DLQ the rule may write to, and a Lambda OnFailure
  destination the role may send to); reserved concurrency where intended; tables with deletion
  protection, point-in-time recovery and Retain policies;
- the plan-change rule matches a `source` that this stack's functions may not publish with, and
  every PutEvents grant is limited by events:source.

    python infra/check_template.py [template.yaml]      exits 1 with one line per problem
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cfn_template import (  # noqa: E402
    DEFAULT_TEMPLATE,
    REPO_ROOT,
    function_properties,
    load_template,
    references,
    serverless_functions,
)

EXPECTED_TIER_SCHEDULES = {"pro": "rate(3 hours)", "scale": "rate(30 minutes)"}
CONTRACT_ENV = {
    "TABLE_NAME", "EVENT_QUEUE_URL", "EVENT_DLQ_URL", "SYNC_QUEUE_URL", "KMS_KEY_ID", "EVENT_BUS_NAME",
    "PLATFORM_KEY_SECRET_ARN", "WEBHOOK_SECRETS_ARN", "STATE_KEY_SECRET_ARN",
    "STRIPE_API_BASE", "STRIPE_CONNECT_BASE", "STRIPE_CLIENT_ID", "DASHBOARD_URL", "OAUTH_REDIRECT_URI",
    "WEBHOOK_TOLERANCE_SECONDS", "LOG_FORMAT", "RUST_LOG", "SYNC_SLICE_SECS",
}
# Actions whose IAM authorisation has no resource-level scoping, so "*" is what AWS requires.
RESOURCE_STAR_ACTIONS = {"xray:puttracesegments", "xray:puttelemetryrecords", "xray:getsamplingrules",
                         "xray:getsamplingtargets", "cloudwatch:putmetricdata"}
ALLOWED_MANAGED_POLICIES = ("AWSLambdaBasicExecutionRole", "AWSXRayDaemonWriteAccess")
SECRET_PATTERNS = [
    (re.compile(r"\b(sk|rk)_(live|test)_[A-Za-z0-9]{8,}"), "Stripe secret/restricted key"),
    (re.compile(r"\bwhsec_[A-Za-z0-9]{8,}"), "Stripe webhook signing secret"),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "AWS access key id"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "private key"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\."), "JWT"),
]
SECRET_ENV_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|PRIVATE|SIGNING|API_KEY", re.I)

# The secrets (by the variable naming them, shared/src/config.rs) each function binary reads at
# cold start; tests/tests/it/secrets.rs starts each function with only these present.
SECRETS_READ_BY = {
    "webhook": {"WEBHOOK_SECRETS_ARN"},
    "oauth": {"PLATFORM_KEY_SECRET_ARN", "STATE_KEY_SECRET_ARN"},
    "api": {"PLATFORM_KEY_SECRET_ARN"},  # POST /oauth/deauthorize on disconnect
    "projector": set(),  # Stripe calls use the account's own sealed token
    "sync": {"PLATFORM_KEY_SECRET_ARN"},  # retried POST /oauth/deauthorize
}
# Binaries whose runaway would starve the rest: they must reserve (and so are capped at) a
# concurrency at least their SQS event sources' MaximumConcurrency.
RESERVED_CONCURRENCY_REQUIRED = {"sync", "projector"}
# Binaries that must not be capped below Stripe's webhook bursts (if they reserve at all).
MIN_RESERVED_IF_SET = {"webhook": 100}
ASYNC_EVENT_TYPES = {"Schedule", "ScheduleV2", "EventBridgeRule", "CloudWatchEvent", "SNS", "S3", "CloudWatchLogs", "IoTRule"}
ALARM_TOPIC_PARAMETER = "AlarmTopicArn"
OWN_EVENT_SOURCE = "stripe-integration"  # shared/src/domain_events.rs SOURCE
PLAN_CHANGED = "workspace.plan_changed"
HTTP_API_TYPES = {"AWS::Serverless::HttpApi": "5xx", "AWS::ApiGatewayV2::Api": "5xx",
                  "AWS::Serverless::Api": "5XXError", "AWS::ApiGateway::RestApi": "5XXError"}

RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
CRON = re.compile(r"^cron\((.+)\)$")
CRON_FIELDS = [  # (name, allowed characters) for minutes hours day-of-month month day-of-week year
    ("minutes", r"[0-9,\-*/]+"),
    ("hours", r"[0-9,\-*/]+"),
    ("day-of-month", r"[0-9,\-*/?LW]+"),
    ("month", r"([0-9]|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|[,\-*/])+"),
    ("day-of-week", r"([0-9#]|SUN|MON|TUE|WED|THU|FRI|SAT|[,\-*/?L])+"),
    ("year", r"[0-9,\-*/]+"),
]


class Report:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.checked = 0

    def check(self, ok: bool, where: str, message: str) -> bool:
        self.checked += 1
        if not ok:
            self.errors.append(f"{where}: {message}")
        return ok


def schedule_error(expression: str) -> str | None:
    """Why an EventBridge schedule expression is invalid, or None."""
    rate = RATE.match(expression)
    if rate:
        value, unit = rate.groups()
        if value.startswith("0"):
            return "rate value must be a positive integer without leading zeros"
        singular = not unit.endswith("s")
        if (int(value) == 1) != singular:
            return f"rate unit must be {'singular' if int(value) == 1 else 'plural'} for value {value}"
        return None
    if expression.startswith("rate("):
        return "rate must look like rate(<positive integer> minute|minutes|hour|hours|day|days)"
    cron = CRON.match(expression)
    if cron:
        fields = cron.group(1).split(" ")
        if len(fields) != 6:
            return f"cron needs 6 space-separated fields, found {len(fields)}"
        for (name, pattern), field in zip(CRON_FIELDS, fields):
            if not re.fullmatch(pattern, field):
                return f"cron {name} field {field!r} is invalid"
        if (fields[2] == "?") == (fields[4] == "?"):
            return "cron needs '?' in exactly one of day-of-month and day-of-week"
        return None
    return "expected rate(...) or cron(...)"


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def workspace_binaries() -> set[str]:
    names: set[str] = set()
    for manifest in REPO_ROOT.glob("functions/*/Cargo.toml"):
        try:
            data = tomllib.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            continue
        names |= {b.get("name") for b in data.get("bin", []) if b.get("name")}
    return names


def check_runtime(template: dict, fn: str, props: dict, binaries: set[str], r: Report) -> None:
    where = f"{fn}"
    r.check(props.get("Runtime") == "provided.al2023", where, f"Runtime must be provided.al2023, not {props.get('Runtime')}")
    r.check(props.get("Architectures") == ["arm64"], where, f"Architectures must be [arm64], not {props.get('Architectures')}")
    r.check(props.get("Handler") == "bootstrap", where, "Handler must be bootstrap")
    meta = template["Resources"][fn].get("Metadata") or {}
    r.check(meta.get("BuildMethod") == "rust-cargolambda", where, "Metadata.BuildMethod must be rust-cargolambda")
    binary = (meta.get("BuildProperties") or {}).get("Binary")
    if r.check(bool(binary), where, "Metadata.BuildProperties.Binary is missing") and binaries:
        r.check(binary in binaries, where, f"Binary {binary!r} is not a [[bin]] of functions/*/Cargo.toml ({sorted(binaries)})")


def check_events(template: dict, fn: str, props: dict, r: Report, tier_schedules: dict) -> None:
    resources = template["Resources"]
    timeout = int(props.get("Timeout", 3))
    for name, event in (props.get("Events") or {}).items():
        where = f"{fn}.Events.{name}"
        etype = event.get("Type")
        eprops = event.get("Properties") or {}
        if etype in ("Schedule", "ScheduleV2"):
            expression = eprops.get("Schedule") or eprops.get("ScheduleExpression")
            if not r.check(isinstance(expression, str), where, "schedule expression must be a literal string"):
                continue
            problem = schedule_error(expression)
            if etype == "ScheduleV2" and problem and re.fullmatch(r"at\(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\)", expression):
                problem = None
            r.check(problem is None, where, f"schedule {expression!r}: {problem}")
            raw_input = eprops.get("Input")
            if raw_input is not None:
                try:
                    payload = json.loads(raw_input)
                except (TypeError, ValueError):
                    r.check(False, where, f"Input is not JSON: {raw_input!r}")
                    continue
                tier = payload.get("tier") if isinstance(payload, dict) else None
                if tier is not None:
                    tier_schedules.setdefault(tier, []).append((where, expression, payload))
        elif etype == "SQS":
            responses = eprops.get("FunctionResponseTypes")
            r.check(responses == ["ReportBatchItemFailures"], where,
                    f"FunctionResponseTypes must be [ReportBatchItemFailures], not {responses}")
            batch = eprops.get("BatchSize", 10)
            window = eprops.get("MaximumBatchingWindowInSeconds", 0)
            r.check(isinstance(batch, int) and 1 <= batch <= (10000 if window else 10), where,
                    f"BatchSize {batch} out of range (1..10, or up to 10000 with a batching window)")
            targets = references(eprops.get("Queue"))
            for queue in targets:
                qprops = (resources.get(queue) or {}).get("Properties") or {}
                visibility = qprops.get("VisibilityTimeout", 30)
                lease = ((resources.get(queue) or {}).get("Metadata") or {}).get("ConsumerLeaseSeconds")
                if isinstance(visibility, int) and isinstance(lease, int):
                    # The consumer leases its work and hands long work on as new messages: a
                    # redelivery must come after the lease and the timeout, and soon after.
                    r.check(visibility > max(lease, timeout), where,
                            f"{queue} VisibilityTimeout {visibility}s must exceed its ConsumerLeaseSeconds "
                            f"{lease}s and the function Timeout {timeout}s")
                elif isinstance(visibility, int):
                    r.check(visibility >= 6 * timeout, where,
                            f"{queue} VisibilityTimeout {visibility}s < 6 x function Timeout {timeout}s")


def check_tier_schedules(tier_schedules: dict, r: Report) -> None:
    found = {tier: [e for _, e, _ in entries] for tier, entries in tier_schedules.items()}
    for tier, expected in EXPECTED_TIER_SCHEDULES.items():
        r.check(found.get(tier) == [expected], "schedules",
                f"tier {tier!r} must have exactly one schedule {expected}, found {found.get(tier, [])}")
        for where, _, payload in tier_schedules.get(tier, []):
            r.check(payload == {"tier": tier}, where, f"Input must be exactly {json.dumps({'tier': tier})}")
    for tier in sorted(set(found) - set(EXPECTED_TIER_SCHEDULES)):
        r.check(False, "schedules", f"unexpected tier schedule {tier!r}: {found[tier]}")


def check_queues(template: dict, r: Report) -> None:
    resources = template["Resources"]
    queues = {lid: res.get("Properties") or {} for lid, res in resources.items() if res.get("Type") == "AWS::SQS::Queue"}
    dead_letter_targets: dict[str, str] = {}
    for lid, props in queues.items():
        redrive = props.get("RedrivePolicy")
        if not redrive:
            continue
        targets = references(redrive.get("deadLetterTargetArn"))
        ok = r.check(len(targets) == 1 and next(iter(targets)) in queues, lid,
                     "RedrivePolicy.deadLetterTargetArn must be !GetAtt <queue in this template>.Arn")
        count = redrive.get("maxReceiveCount")
        r.check(isinstance(count, int) and 1 <= count <= 1000, lid, f"maxReceiveCount {count!r} must be 1..1000")
        if ok:
            dead_letter_targets[next(iter(targets))] = lid
    failure_queues = failure_destination_queues(template)
    for lid, props in queues.items():
        if lid in failure_queues and lid not in dead_letter_targets:
            r.check(props.get("MessageRetentionPeriod", 345600) >= 1209600, lid,
                    "a failure-destination queue should keep messages the maximum 14 days (1209600 s)")
            r.check(not props.get("RedrivePolicy"), lid, "a failure-destination queue should not redrive further")
        elif lid in dead_letter_targets:
            source = queues[dead_letter_targets[lid]]
            keep, source_keep = props.get("MessageRetentionPeriod", 345600), source.get("MessageRetentionPeriod", 345600)
            r.check(keep >= source_keep, lid,
                    f"dead-letter retention {keep}s is shorter than {dead_letter_targets[lid]}'s {source_keep}s")
            r.check(not props.get("RedrivePolicy"), lid, "a dead-letter queue should not redrive further")
        else:
            r.check(bool(props.get("RedrivePolicy")), lid, "queue has no RedrivePolicy to a dead-letter queue")


def _statements(document) -> list[dict]:
    statements = (document or {}).get("Statement") or []
    return [s for s in as_list(statements) if isinstance(s, dict)]


def policy_documents(template: dict, fn: str, props: dict, r: Report | None = None) -> list[tuple[str, dict]]:
    """The function's inline policy documents (SAM Policies and its role's), with where they are."""
    resources = template["Resources"]
    documents: list[tuple[str, dict]] = []
    for i, policy in enumerate(as_list(props.get("Policies") or [])):
        where = f"{fn}.Policies[{i}]"
        if isinstance(policy, str):
            if r:
                r.check(policy.endswith(ALLOWED_MANAGED_POLICIES), where, f"managed policy {policy!r} is broader than needed")
        elif isinstance(policy, dict) and "Statement" in policy:
            documents.append((where, policy))
        elif isinstance(policy, dict) and r:
            r.check(False, where, f"SAM policy template {next(iter(policy), '?')} - write explicit statements")
    for role in references(props.get("Role")):
        role_res = resources.get(role) or {}
        if role_res.get("Type") != "AWS::IAM::Role":
            continue
        rprops = role_res.get("Properties") or {}
        if r:
            for arn in as_list(rprops.get("ManagedPolicyArns") or []):
                r.check(isinstance(arn, str) and arn.endswith(ALLOWED_MANAGED_POLICIES), role,
                        f"managed policy {arn!r} is broader than needed")
        for policy in rprops.get("Policies") or []:
            documents.append((f"{role}.{policy.get('PolicyName', '?')}", policy.get("PolicyDocument")))
    return documents


def allow_statements(template: dict, fn: str, props: dict) -> list[tuple[str, dict]]:
    """(where, statement) for every Allow statement the function's policies hold."""
    return [(f"{where}.{st.get('Sid', '?')}", st) for where, document in policy_documents(template, fn, props)
            for st in _statements(document) if st.get("Effect") == "Allow"]


def statement_actions(st: dict) -> list[str]:
    return [a.lower() for a in as_list(st.get("Action")) if isinstance(a, str)]


def check_policies(template: dict, fn: str, props: dict, r: Report) -> None:
    documents = policy_documents(template, fn, props, r)
    for where, document in documents:
        for st in _statements(document):
            sid = f"{where}.{st.get('Sid', '?')}"
            if st.get("Effect") != "Allow":
                continue
            r.check("NotAction" not in st and "NotResource" not in st, sid, "NotAction/NotResource grants too much")
            actions = [a for a in as_list(st.get("Action")) if isinstance(a, str)]
            for action in actions:
                r.check("*" not in action, sid, f"wildcard action {action!r}")
            for resource in as_list(st.get("Resource")):
                if resource == "*":
                    r.check(all(a.lower() in RESOURCE_STAR_ACTIONS for a in actions), sid,
                            f"Resource '*' for {actions}; scope it to the resource ARNs")
                elif isinstance(resource, str):
                    r.check(False, sid, f"literal resource {resource!r}; use !Ref/!GetAtt")
                else:
                    text = json.dumps(resource)
                    r.check("*" not in text.replace("/index/*", ""), sid, f"wildcard in resource {text}")


def check_environment(template: dict, fn: str, props: dict, r: Report) -> None:
    variables = (props.get("Environment") or {}).get("Variables") or {}
    for name, value in variables.items():
        where = f"{fn}.Environment.{name}"
        r.check(name in CONTRACT_ENV, where, "not a contract variable name (see CONTRACT env list)")
        if SECRET_ENV_NAME.search(name) and not name.endswith(("_ARN", "_ID")):
            r.check(not isinstance(value, str), where, "looks like a secret given as a literal; pass a Secrets Manager ARN")
    # A function whose env names an HTTP API that routes to it via its own events is a CFN cycle.
    env_refs = references(variables)
    for name, event in (props.get("Events") or {}).items():
        if event.get("Type") in ("HttpApi", "Api"):
            apis = references((event.get("Properties") or {}).get("ApiId") or (event.get("Properties") or {}).get("RestApiId"))
            for api in apis & env_refs:
                r.check(False, f"{fn}.Events.{name}",
                        f"environment references {api}, which this event makes depend on {fn}: circular dependency")


def check_literal_secrets(template: dict, r: Report) -> None:
    found: list[tuple[str, str]] = []

    def walk(value, path: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")
        elif isinstance(value, str):
            found.extend((path.lstrip("."), label) for pattern, label in SECRET_PATTERNS if pattern.search(value))

    walk(template, "")
    r.check(not found, "template", "; ".join(f"literal {label} at {where}" for where, label in found))
    for name, spec in (template.get("Parameters") or {}).items():
        if re.search(r"secret|password|token|key$", name, re.I) and not name.endswith(("Arn", "Id")):
            r.check(spec.get("NoEcho") is True and "Default" not in spec, f"Parameters.{name}",
                    "secret-looking parameter needs NoEcho and no Default (better: a Secrets Manager ARN)")

# ---------------------------------------------------------------------------------------- helpers
NO_VALUE = object()


def binary_of(template: dict, fn: str) -> str | None:
    return ((template["Resources"][fn].get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")


def resources_of_type(template: dict, *types: str) -> dict[str, dict]:
    return {lid: res for lid, res in template["Resources"].items() if res.get("Type") in types}


def failure_destination_queues(template: dict) -> set[str]:
    """Queues named as a rule target's DeadLetterConfig, a Lambda OnFailure destination or DLQ."""
    found: set[str] = set()
    for fn in serverless_functions(template):
        props = function_properties(template, fn)
        for event in (props.get("Events") or {}).values():
            found |= references(((event.get("Properties") or {}).get("DeadLetterConfig") or {}).get("Arn"))
        on_failure = (((props.get("EventInvokeConfig") or {}).get("DestinationConfig") or {}).get("OnFailure") or {})
        found |= references(on_failure.get("Destination"))
        found |= references((props.get("DeadLetterQueue") or {}).get("TargetArn"))
    for res in resources_of_type(template, "AWS::Events::Rule").values():
        for target in (res.get("Properties") or {}).get("Targets") or []:
            found |= references((target.get("DeadLetterConfig") or {}).get("Arn"))
    queues = resources_of_type(template, "AWS::SQS::Queue")
    return {q for q in found if q in queues}


def dead_letter_queues(template: dict) -> set[str]:
    targets: set[str] = set()
    for res in resources_of_type(template, "AWS::SQS::Queue").values():
        targets |= references(((res.get("Properties") or {}).get("RedrivePolicy") or {}).get("deadLetterTargetArn"))
    return targets | failure_destination_queues(template)


def evaluate(value, template: dict, params: dict):
    """Resolves Fn::If (conditions evaluated with `params`), parameter Refs and AWS::NoValue."""
    if isinstance(value, list):
        out = []
        for item in value:
            item = evaluate(item, template, params)
            if item is NO_VALUE:
                continue
            out.extend(item if isinstance(item, list) else [item])
        return out
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            name, when_true, when_false = value["Fn::If"]
            return evaluate(when_true if condition_holds(name, template, params) else when_false, template, params)
        if set(value) == {"Ref"}:
            name = value["Ref"]
            if name == "AWS::NoValue":
                return NO_VALUE
            return params[name] if name in params else value
        return {k: evaluate(v, template, params) for k, v in value.items()}
    return value


def condition_holds(name_or_expr, template: dict, params: dict) -> bool:
    conditions = template.get("Conditions") or {}
    expr = conditions.get(name_or_expr) if isinstance(name_or_expr, str) else name_or_expr
    if expr is None:
        raise ValueError(f"unknown condition {name_or_expr!r}")
    (key, arg), = expr.items()
    if key in ("Condition", "Fn::Condition"):
        return condition_holds(arg, template, params)
    if key == "Fn::Equals":
        return evaluate(arg[0], template, params) == evaluate(arg[1], template, params)
    if key == "Fn::Not":
        return not condition_holds(arg[0], template, params)
    if key == "Fn::And":
        return all(condition_holds(a, template, params) for a in arg)
    if key == "Fn::Or":
        return any(condition_holds(a, template, params) for a in arg)
    raise ValueError(f"unsupported condition function {key}")


def parameter_defaults(template: dict) -> dict:
    return {name: spec["Default"] for name, spec in (template.get("Parameters") or {}).items() if "Default" in spec}


# ---------------------------------------------------------------------------------------- secrets
def check_secret_access(template: dict, functions: list[str], r: Report) -> None:
    secrets = set(resources_of_type(template, "AWS::SecretsManager::Secret"))
    secret_params = {n for n, spec in (template.get("Parameters") or {}).items()
                     if "secretsmanager" in json.dumps(spec) or re.search(r"Secrets?Arn$", n)}
    named_by: dict[str, set[str]] = {}  # env var -> secrets it names, across functions
    read: set[str] = set()
    for fn in functions:
        props = function_properties(template, fn)
        binary = binary_of(template, fn)
        variables = (props.get("Environment") or {}).get("Variables") or {}
        env = {name: references(expr) & (secrets | secret_params) for name, expr in variables.items()}
        env = {name: refs for name, refs in env.items() if refs}
        for name, refs in env.items():
            named_by.setdefault(name, set()).update(refs)
        r.check(not (set().union(*env.values()) & secret_params) if env else True, fn,
                "a secret comes from a parameter ARN; the template creates each secret so IAM can name it exactly")
        expected = SECRETS_READ_BY.get(binary)
        if not r.check(expected is not None, fn, f"binary {binary!r} has no SECRETS_READ_BY entry in check_template.py"):
            continue
        r.check(set(env) == expected, fn,
                f"environment names secrets {sorted(env)}, but binary {binary!r} reads exactly {sorted(expected)}")
        granted: set[str] = set()
        for where, st in allow_statements(template, fn, props):
            actions = statement_actions(st)
            if not any(a.startswith("secretsmanager:") for a in actions):
                continue
            r.check(actions == ["secretsmanager:getsecretvalue"], where,
                    f"secrets statement may only allow secretsmanager:GetSecretValue, not {actions}")
            for resource in as_list(st.get("Resource")):
                refs = references(resource)
                r.check(bool(refs) and refs <= secrets, where,
                        f"GetSecretValue on {json.dumps(resource)}: name a secret this template creates (!Ref)")
                granted |= refs
        wanted = set().union(*env.values()) if env else set()
        for extra in sorted(granted - wanted):
            r.check(False, fn, f"role may read secret {extra}, which the function does not use")
        for missing in sorted(wanted - granted):
            r.check(False, fn, f"function reads secret {missing}, but its role has no GetSecretValue on it")
        read |= granted
    for name, refs in named_by.items():
        r.check(len(refs) == 1, f"Environment.{name}", f"names different secrets in different functions: {sorted(refs)}")
    for secret in sorted(secrets):
        props = template["Resources"][secret].get("Properties") or {}
        r.check(secret in read, secret, "no function reads this secret")
        r.check(not isinstance(props.get("SecretString"), str), secret,
                "literal SecretString in the template; leave it empty for the deployer, or generate it")


# ---------------------------------------------------------------------------------------- alarms
def alarms_on(template: dict, namespace: str, metric: str, dimension: str, target: str) -> list[str]:
    found = []
    for lid, res in resources_of_type(template, "AWS::CloudWatch::Alarm").items():
        props = res.get("Properties") or {}
        if props.get("Namespace") != namespace or props.get("MetricName") != metric:
            continue
        if any(d.get("Name") == dimension and references(d.get("Value")) == {target}
               for d in props.get("Dimensions") or [] if isinstance(d, dict)):
            found.append(lid)
    return found


def check_alarms(template: dict, functions: list[str], r: Report) -> None:
    resources = template["Resources"]
    for fn in functions:
        for metric in ("Errors", "Throttles"):
            r.check(bool(alarms_on(template, "AWS/Lambda", metric, "FunctionName", fn)), fn,
                    f"no AWS/Lambda {metric} alarm with FunctionName !Ref {fn}")
    for api, res in resources.items():
        metric = HTTP_API_TYPES.get(res.get("Type"))
        if metric:
            dimension = "ApiId" if metric == "5xx" else "ApiName"
            r.check(bool(alarms_on(template, "AWS/ApiGateway", metric, dimension, api)), api,
                    f"no AWS/ApiGateway {metric} alarm with {dimension} naming {api}")
    dlqs = dead_letter_queues(template)
    for queue in resources_of_type(template, "AWS::SQS::Queue"):
        if queue in dlqs:
            found = alarms_on(template, "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", queue)
            r.check(bool(found), queue, "dead-letter queue has no ApproximateNumberOfMessagesVisible alarm")
            for lid in found:
                props = resources[lid]["Properties"]
                first = (props.get("ComparisonOperator"), props.get("Threshold")) in (
                    ("GreaterThanThreshold", 0), ("GreaterThanOrEqualToThreshold", 1))
                r.check(first, lid, "a dead-letter alarm must fire on the first message (> 0 or >= 1)")
        else:
            r.check(bool(alarms_on(template, "AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", queue)), queue,
                    "queue has no ApproximateAgeOfOldestMessage alarm")
    check_alarm_actions(template, r)


def as_actions(value) -> list:
    return [] if value is NO_VALUE else value if isinstance(value, list) else [value]


def check_alarm_actions(template: dict, r: Report) -> None:
    """Every alarm notifies AlarmTopicArn when given, else a topic the template creates then only."""
    params = parameter_defaults(template)
    if not r.check(ALARM_TOPIC_PARAMETER in (template.get("Parameters") or {}), "Parameters",
                   f"no {ALARM_TOPIC_PARAMETER} parameter"):
        return
    given = dict(params, **{ALARM_TOPIC_PARAMETER: "arn:aws:sns:us-east-1:123456789012:ops"})
    empty = dict(params, **{ALARM_TOPIC_PARAMETER: ""})
    topics = resources_of_type(template, "AWS::SNS::Topic")
    created: set[str] = set()
    for lid, res in topics.items():
        condition = res.get("Condition")
        try:
            when_empty = condition is None or condition_holds(condition, template, empty)
            when_given = condition is not None and condition_holds(condition, template, given)
        except (ValueError, KeyError, TypeError) as exc:
            r.check(False, lid, f"condition not understood: {exc}")
            continue
        if when_empty and not when_given:
            created.add(lid)
    r.check(bool(created), "AlarmTopic",
            f"no AWS::SNS::Topic created exactly when {ALARM_TOPIC_PARAMETER} is empty (Condition)")
    for lid, res in resources_of_type(template, "AWS::CloudWatch::Alarm").items():
        props = res.get("Properties") or {}
        if not r.check(bool(props.get("AlarmActions")), lid, "no AlarmActions"):
            continue
        try:
            with_param = as_actions(evaluate(props["AlarmActions"], template, given))
            without = as_actions(evaluate(props["AlarmActions"], template, empty))
        except (ValueError, KeyError, TypeError) as exc:
            r.check(False, lid, f"AlarmActions not understood: {exc}")
            continue
        r.check(given[ALARM_TOPIC_PARAMETER] in with_param, lid,
                f"AlarmActions do not notify {ALARM_TOPIC_PARAMETER} when it is given")
        r.check(any(references(a) & created for a in without), lid,
                f"AlarmActions notify nothing the template creates when {ALARM_TOPIC_PARAMETER} is empty")


# ---------------------------------------------------------------------------------------- async triggers
def queue_policy_allows(template: dict, queue: str, service: str) -> bool:
    for res in resources_of_type(template, "AWS::SQS::QueuePolicy").values():
        props = res.get("Properties") or {}
        if queue not in references(props.get("Queues")):
            continue
        for st in _statements(props.get("PolicyDocument")):
            principal = json.dumps(st.get("Principal"))
            if st.get("Effect") == "Allow" and service in principal and "sqs:sendmessage" in statement_actions(st):
                return True
    return False


def check_async_failures(template: dict, functions: list[str], r: Report) -> None:
    for fn in functions:
        props = function_properties(template, fn)
        asynchronous = {name: ev for name, ev in (props.get("Events") or {}).items() if ev.get("Type") in ASYNC_EVENT_TYPES}
        if not asynchronous:
            continue
        for name, event in asynchronous.items():
            where = f"{fn}.Events.{name}"
            dlc = (event.get("Properties") or {}).get("DeadLetterConfig") or {}
            if not r.check(bool(dlc.get("Arn") or dlc.get("Type")), where,
                           "asynchronous trigger has no DeadLetterConfig (undelivered events would be lost)"):
                continue
            for queue in references(dlc.get("Arn")):
                r.check(queue_policy_allows(template, queue, "events.amazonaws.com"), where,
                        f"no AWS::SQS::QueuePolicy lets events.amazonaws.com SendMessage to {queue}")
        on_failure = (((props.get("EventInvokeConfig") or {}).get("DestinationConfig") or {}).get("OnFailure") or {})
        destination = on_failure.get("Destination") or (props.get("DeadLetterQueue") or {}).get("TargetArn")
        if not r.check(bool(destination), fn,
                       "asynchronously invoked, but no EventInvokeConfig OnFailure destination (or DeadLetterQueue)"):
            continue
        for queue in references(destination) & set(resources_of_type(template, "AWS::SQS::Queue")):
            allowed = any("sqs:sendmessage" in statement_actions(st) and queue in references(st.get("Resource"))
                          for _, st in allow_statements(template, fn, props))
            r.check(allowed, fn, f"role may not sqs:SendMessage to its failure destination {queue}")


# ---------------------------------------------------------------------------------------- concurrency
def check_reserved_concurrency(template: dict, functions: list[str], r: Report) -> None:
    for fn in functions:
        props = function_properties(template, fn)
        binary = binary_of(template, fn)
        reserved = props.get("ReservedConcurrentExecutions")
        pollers = [((ev.get("Properties") or {}).get("ScalingConfig") or {}).get("MaximumConcurrency", 1000)
                   for ev in (props.get("Events") or {}).values() if ev.get("Type") == "SQS"]
        if binary in RESERVED_CONCURRENCY_REQUIRED:
            if r.check(isinstance(reserved, int) and reserved >= 1, fn,
                       "ReservedConcurrentExecutions must be set: a runaway here would starve the other functions"):
                for maximum in pollers:
                    r.check(reserved >= maximum, fn,
                            f"ReservedConcurrentExecutions {reserved} < SQS MaximumConcurrency {maximum} (the poller would be throttled)")
        if binary in MIN_RESERVED_IF_SET and reserved is not None:
            r.check(isinstance(reserved, int) and reserved >= MIN_RESERVED_IF_SET[binary], fn,
                    f"ReservedConcurrentExecutions {reserved} caps {binary} below {MIN_RESERVED_IF_SET[binary]} (Stripe's bursts)")


# ---------------------------------------------------------------------------------------- tables
def check_tables(template: dict, r: Report) -> None:
    for lid, res in resources_of_type(template, "AWS::DynamoDB::Table").items():
        props = res.get("Properties") or {}
        r.check(props.get("DeletionProtectionEnabled") is True, lid, "DeletionProtectionEnabled must be true")
        pitr = (props.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled")
        r.check(pitr is True, lid, "PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled must be true")
        for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
            r.check(res.get(policy) == "Retain", lid, f"{policy} must be Retain")


# ---------------------------------------------------------------------------------------- event sources
def check_event_sources(template: dict, functions: list[str], r: Report) -> None:
    params = parameter_defaults(template)
    patterns: list[tuple[str, dict]] = []
    for fn in functions:
        for name, event in (function_properties(template, fn).get("Events") or {}).items():
            if event.get("Type") in ("EventBridgeRule", "CloudWatchEvent"):
                patterns.append((f"{fn}.Events.{name}", (event.get("Properties") or {}).get("Pattern") or {}))
    for lid, res in resources_of_type(template, "AWS::Events::Rule").items():
        pattern = (res.get("Properties") or {}).get("EventPattern")
        if isinstance(pattern, dict):
            patterns.append((lid, pattern))
    plan_change_sources: set[str] = set()
    for where, pattern in patterns:
        sources = evaluate(pattern.get("source"), template, params) if pattern.get("source") is not None else []
        plain = isinstance(sources, list) and bool(sources) and all(isinstance(s, str) and s for s in sources)
        r.check(plain, where, "rule pattern must match a `source` (a list of exact publisher names)")
        if PLAN_CHANGED in as_list(pattern.get("detail-type")) and plain:
            plan_change_sources |= set(sources)
            r.check(OWN_EVENT_SOURCE not in sources, where,
                    f"plan-change rule matches {OWN_EVENT_SOURCE!r}, the source this stack's functions publish with")
    for fn in functions:
        props = function_properties(template, fn)
        for where, st in allow_statements(template, fn, props):
            if "events:putevents" not in statement_actions(st):
                continue
            allowed = ((st.get("Condition") or {}).get("StringEquals") or {}).get("events:source")
            allowed = set(as_list(evaluate(allowed, template, params))) if allowed is not None else set()
            if r.check(bool(allowed), where, "events:PutEvents must be limited by a StringEquals events:source condition"):
                r.check(not (allowed & plan_change_sources), where,
                        f"may publish as {sorted(allowed & plan_change_sources)}, the plan-change source")



def run(template: dict) -> Report:
    """Every check over a loaded template."""
    r = Report()
    binaries = workspace_binaries()
    functions = serverless_functions(template)
    r.check(bool(functions), "Resources", "no AWS::Serverless::Function found")
    tier_schedules: dict = {}
    for fn in functions:
        props = function_properties(template, fn)
        check_runtime(template, fn, props, binaries, r)
        check_events(template, fn, props, r, tier_schedules)
        check_policies(template, fn, props, r)
        check_environment(template, fn, props, r)
    for lid, res in template["Resources"].items():
        if res.get("Type") in ("AWS::Events::Rule", "AWS::Scheduler::Schedule"):
            expression = (res.get("Properties") or {}).get("ScheduleExpression")
            if isinstance(expression, str):
                problem = schedule_error(expression)
                r.check(problem is None, lid, f"schedule {expression!r}: {problem}")
    check_tier_schedules(tier_schedules, r)
    check_queues(template, r)
    check_literal_secrets(template, r)
    check_secret_access(template, functions, r)
    check_alarms(template, functions, r)
    check_async_failures(template, functions, r)
    check_reserved_concurrency(template, functions, r)
    check_tables(template, r)
    check_event_sources(template, functions, r)
    return r


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT_TEMPLATE
    try:
        template = load_template(path)
    except (OSError, ValueError) as exc:
        print(f"check_template: {exc}", file=sys.stderr)
        return 2
    r = run(template)
    functions = serverless_functions(template)

    for error in r.errors:
        print(f"check_template: ERROR {error}", file=sys.stderr)
    if r.errors:
        print(f"check_template: {len(r.errors)} problem(s) in {path.name}", file=sys.stderr)
        return 1
    print(f"check_template: {path.name} OK ({r.checked} checks, {len(functions)} functions)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
