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
  rejects the circular dependency at deploy time; the linters do not see it).

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
    "TABLE_NAME", "EVENT_QUEUE_URL", "SYNC_QUEUE_URL", "KMS_KEY_ID", "EVENT_BUS_NAME", "SECRETS_ARN",
    "STRIPE_API_BASE", "STRIPE_CONNECT_BASE", "STRIPE_CLIENT_ID", "DASHBOARD_URL", "OAUTH_REDIRECT_URI",
    "WEBHOOK_TOLERANCE_SECONDS", "LOG_FORMAT", "RUST_LOG",
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
                if isinstance(visibility, int):
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
    for lid, props in queues.items():
        if lid in dead_letter_targets:
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


def check_policies(template: dict, fn: str, props: dict, r: Report) -> None:
    resources = template["Resources"]
    documents: list[tuple[str, dict]] = []
    for i, policy in enumerate(as_list(props.get("Policies") or [])):
        where = f"{fn}.Policies[{i}]"
        if isinstance(policy, str):
            r.check(policy.endswith(ALLOWED_MANAGED_POLICIES), where, f"managed policy {policy!r} is broader than needed")
        elif isinstance(policy, dict) and "Statement" in policy:
            documents.append((where, policy))
        elif isinstance(policy, dict):
            r.check(False, where, f"SAM policy template {next(iter(policy), '?')} - write explicit statements")
    for role in references(props.get("Role")):
        role_res = resources.get(role) or {}
        if role_res.get("Type") != "AWS::IAM::Role":
            continue
        rprops = role_res.get("Properties") or {}
        for arn in as_list(rprops.get("ManagedPolicyArns") or []):
            r.check(isinstance(arn, str) and arn.endswith(ALLOWED_MANAGED_POLICIES), role,
                    f"managed policy {arn!r} is broader than needed")
        for policy in rprops.get("Policies") or []:
            documents.append((f"{role}.{policy.get('PolicyName', '?')}", policy.get("PolicyDocument")))
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


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT_TEMPLATE
    try:
        template = load_template(path)
    except (OSError, ValueError) as exc:
        print(f"check_template: {exc}", file=sys.stderr)
        return 2
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

    for error in r.errors:
        print(f"check_template: ERROR {error}", file=sys.stderr)
    if r.errors:
        print(f"check_template: {len(r.errors)} problem(s) in {path.name}", file=sys.stderr)
        return 1
    print(f"check_template: {path.name} OK ({r.checked} checks, {len(functions)} functions)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
