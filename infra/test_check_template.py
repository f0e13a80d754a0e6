#!/usr/bin/env python3
"""Negative tests of check_template.py: the real template passes, and each mutated copy - one
safeguard removed or weakened - fails with the problem named.

    .venv/bin/python infra/test_check_template.py      (infra/lint.sh runs it)
"""

from __future__ import annotations

import copy
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import check_template  # noqa: E402
from cfn_template import load_template  # noqa: E402

TEMPLATE = load_template()


def problems(mutate) -> list[str]:
    template = copy.deepcopy(TEMPLATE)
    mutate(template)
    return check_template.run(template).errors


def res(template: dict, logical_id: str) -> dict:
    return template["Resources"][logical_id]


def props(template: dict, logical_id: str) -> dict:
    return res(template, logical_id)["Properties"]


def statement(template: dict, role: str, sid: str) -> dict:
    for policy in props(template, role)["Policies"]:
        for st in policy["PolicyDocument"]["Statement"]:
            if st.get("Sid") == sid:
                return st
    raise KeyError(f"{role}.{sid}")


class CheckTemplateFails(unittest.TestCase):
    def assertFlags(self, mutate, *fragments: str) -> None:
        found = problems(mutate)
        self.assertTrue(found, "the mutated template passed every check")
        for fragment in fragments:
            self.assertTrue(any(fragment in p for p in found), f"no problem mentions {fragment!r}: {found}")

    def test_the_real_template_passes(self):
        self.assertEqual(check_template.run(copy.deepcopy(TEMPLATE)).errors, [])

    # ------------------------------------------------------------------ queues
    def test_the_sync_queue_visibility_must_outlast_the_consumers_lease(self):
        def short(t):
            props(t, "SyncQueue")["VisibilityTimeout"] = 1000
        self.assertFlags(short, "SyncQueue VisibilityTimeout 1000s must exceed its ConsumerLeaseSeconds")

    def test_without_a_declared_lease_the_visibility_is_six_timeouts(self):
        def no_lease(t):
            res(t, "SyncQueue").pop("Metadata")
        self.assertFlags(no_lease, "SyncQueue VisibilityTimeout 1080s < 6 x function Timeout 900s")

    # ------------------------------------------------------------------ alarms
    def test_each_function_needs_an_errors_alarm(self):
        for fn in ("OAuth", "Webhook", "Projector", "Sync", "Api"):
            with self.subTest(fn):
                self.assertFlags(lambda t, fn=fn: t["Resources"].pop(f"{fn}ErrorsAlarm"),
                                 f"{fn}Function: no AWS/Lambda Errors alarm")

    def test_each_function_needs_a_throttles_alarm(self):
        for fn in ("OAuth", "Webhook", "Projector", "Sync", "Api"):
            with self.subTest(fn):
                self.assertFlags(lambda t, fn=fn: t["Resources"].pop(f"{fn}ThrottlesAlarm"),
                                 f"{fn}Function: no AWS/Lambda Throttles alarm")

    def test_an_alarm_on_another_function_does_not_count(self):
        def mutate(t):
            props(t, "WebhookErrorsAlarm")["Dimensions"][0]["Value"] = {"Ref": "ApiFunction"}
        self.assertFlags(mutate, "WebhookFunction: no AWS/Lambda Errors alarm")

    def test_the_http_api_needs_a_5xx_alarm(self):
        self.assertFlags(lambda t: t["Resources"].pop("Api5xxAlarm"), "Api: no AWS/ApiGateway 5xx alarm")

    def test_both_work_queues_need_an_oldest_message_age_alarm(self):
        for queue in ("EventQueue", "SyncQueue"):
            with self.subTest(queue):
                self.assertFlags(lambda t, q=queue: t["Resources"].pop(f"{q}AgeAlarm"),
                                 f"{queue}: queue has no ApproximateAgeOfOldestMessage alarm")

    def test_every_dead_letter_queue_needs_a_depth_alarm(self):
        for queue in ("EventDeadLetterQueue", "SyncDeadLetterQueue", "SyncTriggerDeadLetterQueue"):
            with self.subTest(queue):
                alarm = queue.replace("Queue", "Alarm")
                self.assertFlags(lambda t, a=alarm: t["Resources"].pop(a),
                                 f"{queue}: dead-letter queue has no ApproximateNumberOfMessagesVisible alarm")

    def test_a_dead_letter_alarm_fires_on_the_first_message(self):
        self.assertFlags(lambda t: props(t, "EventDeadLetterAlarm").update(Threshold=10), "fire on the first message")

    def test_every_alarm_needs_an_action(self):
        self.assertFlags(lambda t: props(t, "SyncQueueAgeAlarm").pop("AlarmActions"), "SyncQueueAgeAlarm: no AlarmActions")

    def test_alarms_must_notify_the_created_topic_when_none_is_given(self):
        # The old shape: notify the parameter's topic, or nothing.
        def mutate(t):
            props(t, "ApiErrorsAlarm")["AlarmActions"] = {
                "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
        self.assertFlags(mutate, "ApiErrorsAlarm: AlarmActions notify nothing the template creates")

    def test_alarms_must_notify_the_given_topic(self):
        def mutate(t):
            props(t, "ApiErrorsAlarm")["AlarmActions"] = [{"Ref": "AlarmTopic"}]
        self.assertFlags(mutate, "ApiErrorsAlarm: AlarmActions do not notify AlarmTopicArn")

    def test_the_topic_is_created_only_when_none_is_given(self):
        self.assertFlags(lambda t: res(t, "AlarmTopic").update(Condition="HasAlarmTopic"),
                         "no AWS::SNS::Topic created exactly when AlarmTopicArn is empty")
        self.assertFlags(lambda t: t["Resources"].pop("AlarmTopic"),
                         "no AWS::SNS::Topic created exactly when AlarmTopicArn is empty")

    # ------------------------------------------------------------------ asynchronous triggers
    def test_every_async_trigger_needs_a_rule_dead_letter_queue(self):
        for event in ("ProTierSchedule", "ScaleTierSchedule", "PlanChanged"):
            with self.subTest(event):
                def mutate(t, e=event):
                    props(t, "SyncFunction")["Events"][e]["Properties"].pop("DeadLetterConfig")
                self.assertFlags(mutate, f"SyncFunction.Events.{event}: asynchronous trigger has no DeadLetterConfig")

    def test_the_rule_dead_letter_queue_must_accept_eventbridge(self):
        self.assertFlags(lambda t: t["Resources"].pop("SyncTriggerDeadLetterQueuePolicy"),
                         "no AWS::SQS::QueuePolicy lets events.amazonaws.com SendMessage")

    def test_an_async_function_needs_an_on_failure_destination(self):
        self.assertFlags(lambda t: props(t, "SyncFunction").pop("EventInvokeConfig"),
                         "SyncFunction: asynchronously invoked, but no EventInvokeConfig OnFailure")

    def test_the_role_must_reach_its_failure_destination(self):
        def mutate(t):
            policy = props(t, "SyncFunctionRole")["Policies"][0]["PolicyDocument"]
            policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != "UndeliveredTriggers"]
        self.assertFlags(mutate, "role may not sqs:SendMessage to its failure destination SyncTriggerDeadLetterQueue")

    # ------------------------------------------------------------------ concurrency
    def test_sync_and_projector_must_reserve_concurrency(self):
        for fn in ("SyncFunction", "ProjectorFunction"):
            with self.subTest(fn):
                self.assertFlags(lambda t, f=fn: props(t, f).pop("ReservedConcurrentExecutions"),
                                 f"{fn}: ReservedConcurrentExecutions must be set")

    def test_reserved_concurrency_below_the_pollers_maximum_fails(self):
        self.assertFlags(lambda t: props(t, "ProjectorFunction").update(ReservedConcurrentExecutions=5),
                         "ReservedConcurrentExecutions 5 < SQS MaximumConcurrency 10")

    def test_the_webhook_is_not_capped_below_stripes_bursts(self):
        self.assertFlags(lambda t: props(t, "WebhookFunction").update(ReservedConcurrentExecutions=10),
                         "caps webhook below 100")

    # ------------------------------------------------------------------ table
    def test_the_table_needs_deletion_protection_pitr_and_retain(self):
        cases = {
            "DeletionProtectionEnabled must be true": lambda t: props(t, "StripeTable").pop("DeletionProtectionEnabled"),
            "PointInTimeRecoveryEnabled must be true": lambda t: props(t, "StripeTable")[
                "PointInTimeRecoverySpecification"].update(PointInTimeRecoveryEnabled=False),
            "DeletionPolicy must be Retain": lambda t: res(t, "StripeTable").update(DeletionPolicy="Delete"),
            "UpdateReplacePolicy must be Retain": lambda t: res(t, "StripeTable").pop("UpdateReplacePolicy"),
        }
        for fragment, mutate in cases.items():
            with self.subTest(fragment):
                self.assertFlags(mutate, fragment)

    # ------------------------------------------------------------------ secrets
    def test_the_webhook_may_not_read_the_platform_key(self):
        def mutate(t):
            statement(t, "WebhookFunctionRole", "Secrets")["Resource"] = [
                {"Ref": "WebhookSigningSecrets"}, {"Ref": "StripePlatformKeySecret"}]
        self.assertFlags(mutate, "WebhookFunction: role may read secret StripePlatformKeySecret, which the function does not use")

    def test_the_webhook_may_not_be_given_the_platform_key(self):
        def mutate(t):
            props(t, "WebhookFunction")["Environment"]["Variables"]["PLATFORM_KEY_SECRET_ARN"] = {
                "Ref": "StripePlatformKeySecret"}
        self.assertFlags(mutate, "WebhookFunction: environment names secrets")

    def test_functions_without_secrets_may_not_read_one(self):
        def mutate(t):
            statements = props(t, "ProjectorFunctionRole")["Policies"][0]["PolicyDocument"]["Statement"]
            statements.append({"Sid": "Secrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                               "Resource": {"Ref": "StripePlatformKeySecret"}})
        self.assertFlags(mutate, "ProjectorFunction: role may read secret StripePlatformKeySecret")

    def test_a_function_must_be_allowed_what_it_reads(self):
        def mutate(t):
            statement(t, "OAuthFunctionRole", "Secrets")["Resource"] = [{"Ref": "StripePlatformKeySecret"}]
        self.assertFlags(mutate, "OAuthFunction: function reads secret OAuthStateKeySecret, but its role has no GetSecretValue")

    def test_one_shared_secret_parameter_fails(self):
        def mutate(t):
            t["Parameters"]["StripeSecretsArn"] = {"Type": "String"}
            for fn in ("WebhookFunction",):
                props(t, fn)["Environment"]["Variables"]["WEBHOOK_SECRETS_ARN"] = {"Ref": "StripeSecretsArn"}
            statement(t, "WebhookFunctionRole", "Secrets")["Resource"] = {"Ref": "StripeSecretsArn"}
        self.assertFlags(mutate, "a secret comes from a parameter ARN", "name a secret this template creates")

    def test_secret_statements_allow_only_get_secret_value(self):
        def mutate(t):
            statement(t, "ApiFunctionRole", "Secrets")["Action"] = [
                "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"]
        self.assertFlags(mutate, "may only allow secretsmanager:GetSecretValue")

    def test_a_literal_secret_value_fails(self):
        self.assertFlags(lambda t: props(t, "StripePlatformKeySecret").update(SecretString="REPLACE_ME"),
                         "literal SecretString")

    # ------------------------------------------------------------------ event sources
    def test_the_plan_change_rule_must_match_a_source(self):
        def mutate(t):
            props(t, "SyncFunction")["Events"]["PlanChanged"]["Properties"]["Pattern"].pop("source")
        self.assertFlags(mutate, "SyncFunction.Events.PlanChanged: rule pattern must match a `source`")

    def test_the_plan_change_source_may_not_be_our_own(self):
        self.assertFlags(lambda t: t["Parameters"]["PlanChangeSource"].update(Default="stripe-integration"),
                         "plan-change rule matches 'stripe-integration'")

    def test_put_events_must_be_limited_by_source(self):
        self.assertFlags(lambda t: statement(t, "ApiFunctionRole", "DomainEvents").pop("Condition"),
                         "events:PutEvents must be limited by a StringEquals events:source condition")

    def test_functions_may_not_publish_as_the_plan_change_source(self):
        def mutate(t):
            statement(t, "ProjectorFunctionRole", "DomainEvents")["Condition"]["StringEquals"]["events:source"] = [
                "stripe-integration", {"Ref": "PlanChangeSource"}]
        self.assertFlags(mutate, "may publish as ['saas.billing'], the plan-change source")


if __name__ == "__main__":
    unittest.main()
