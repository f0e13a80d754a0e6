"""Reads template.yaml for the local tooling: CloudFormation short tags and a small intrinsic resolver.

Short tags (!Ref, !GetAtt, !Sub, ...) are turned into their long form ({"Ref": ..},
{"Fn::GetAtt": [..]}, ...), so callers see one shape whatever the author wrote.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation's short intrinsic tags."""


def _construct_intrinsic(loader: yaml.Loader, tag_suffix: str, node: yaml.Node) -> dict:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            # !GetAtt Resource.Attribute (the attribute may itself contain dots)
            resource, _, attribute = str(value).partition(".")
            value = [resource, attribute]
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: Path | str = DEFAULT_TEMPLATE) -> dict:
    with open(path, encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(data, dict) or "Resources" not in data:
        raise ValueError(f"{path}: not a CloudFormation template (no Resources)")
    return data


def function_properties(template: dict, logical_id: str) -> dict:
    """Properties of an AWS::Serverless::Function with Globals.Function merged in (env vars merged)."""
    globals_fn = (template.get("Globals") or {}).get("Function") or {}
    props = dict(globals_fn)
    own = template["Resources"][logical_id].get("Properties") or {}
    for key, value in own.items():
        if key == "Environment":
            merged = dict(((globals_fn.get("Environment") or {}).get("Variables")) or {})
            merged.update((value or {}).get("Variables") or {})
            props["Environment"] = {"Variables": merged}
        else:
            props[key] = value
    return props


def serverless_functions(template: dict) -> list[str]:
    return [lid for lid, res in template["Resources"].items() if res.get("Type") == "AWS::Serverless::Function"]


def references(value: Any) -> set[str]:
    """Logical ids and parameter names a value refers to through Ref, GetAtt or Sub."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                target = inner[0] if isinstance(inner, list) else str(inner).split(".")[0]
                found.add(target)
            elif key == "Fn::Sub":
                text = inner[0] if isinstance(inner, list) else inner
                for var in re.findall(r"\$\{([^}!][^}]*)\}", str(text)):
                    found.add(var.split(".")[0])
                if isinstance(inner, list) and len(inner) > 1:
                    found |= references(inner[1])
            else:
                found |= references(inner)
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    return {ref for ref in found if not ref.startswith("AWS::")}


class Unresolved(Exception):
    """An intrinsic refers to something the resolver cannot give a value for."""


class Resolver:
    """Evaluates Ref, GetAtt, Sub, Join, Select, If-free intrinsics against known values.

    `lookup(logical_id, attribute)` gives a resource's Ref (attribute None) or attribute value, and may
    create the resource on demand; it raises Unresolved when it cannot.
    """

    def __init__(self, params: dict[str, Any], pseudo: dict[str, str], lookup: Callable[[str, str | None], Any]):
        self.params = params
        self.pseudo = pseudo
        self.lookup = lookup

    def _ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        return self.lookup(name, None)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::GetAtt":
                target, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
                return self.lookup(target, attribute)
            if key == "Fn::Sub":
                text, local = (arg[0], arg[1]) if isinstance(arg, list) else (arg, {})
                local = {k: self.resolve(v) for k, v in (local or {}).items()}

                def repl(match: re.Match) -> str:
                    var = match.group(1)
                    if var.startswith("!"):
                        return "${" + var[1:] + "}"
                    if var in local:
                        return str(local[var])
                    if "." in var and var.split(".")[0] not in self.pseudo:
                        target, attribute = var.split(".", 1)
                        return str(self.lookup(target, attribute))
                    return str(self._ref(var))

                return re.sub(r"\$\{([^}]*)\}", repl, text)
            if key == "Fn::Join":
                sep, items = arg
                return sep.join(str(i) for i in self.resolve(items))
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key.startswith("Fn::") or key == "Condition":
                raise Unresolved(f"unsupported intrinsic {key}")
        return {k: self.resolve(v) for k, v in value.items()}
