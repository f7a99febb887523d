"""Check that our Thrift IDL loads and stays wire-compatible with another.

    python scripts/thrift_check.py [--ours idl/idl_rpc.thrift]
                                   [--template tests/fixtures/seed_idl_rpc.thrift]

Wire-compatible means: every struct, field and method of the template is
still there with the same field id, type and requiredness (names may not
change either: generated code uses them); Pull's argument stays at id 2;
anything we added is an optional field with a new id, or a new method.
Exits 1 and lists each difference otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import thriftpy2

ROOT = Path(__file__).resolve().parent.parent


def _shape(spec: tuple[Any, ...]) -> tuple[Any, ...]:
    """(type, name, element type or struct name, required) of a field spec."""
    ttype, name, *rest = spec
    required = bool(rest[-1]) if rest else False
    detail = rest[0] if len(rest) == 2 else None
    if isinstance(detail, tuple):  # a container: (element type, element spec)
        detail = tuple(d.__name__ if isinstance(d, type) else d for d in detail)
    elif isinstance(detail, type):
        detail = detail.__name__
    return ttype, name, detail, required


def _structs(module: ModuleType) -> dict[str, type]:
    return {n: v for n, v in vars(module).items() if isinstance(v, type) and hasattr(v, "thrift_spec")}


def differences(ours: ModuleType, template: ModuleType) -> list[str]:
    problems = []
    our_structs = _structs(ours)
    for name, struct in _structs(template).items():
        if name not in our_structs:
            problems.append(f"struct {name} is missing")
            continue
        our_spec = our_structs[name].thrift_spec
        for field_id, spec in struct.thrift_spec.items():
            if field_id not in our_spec:
                problems.append(f"{name} field {field_id} ({spec[1]}) is missing")
            elif _shape(our_spec[field_id]) != _shape(spec):
                problems.append(f"{name} field {field_id}: {_shape(our_spec[field_id])} != template {_shape(spec)}")
        for field_id, spec in our_spec.items():
            if field_id not in struct.thrift_spec and _shape(spec)[3]:
                problems.append(f"{name} field {field_id} ({spec[1]}) is new, so it must be optional")
    for service_name in ("IMService",):
        theirs, mine = getattr(template, service_name), getattr(ours, service_name, None)
        if mine is None:
            problems.append(f"service {service_name} is missing")
            continue
        for method in theirs.thrift_services:
            if method not in mine.thrift_services:
                problems.append(f"{service_name}.{method} is missing")
                continue
            for suffix in ("_args", "_result"):
                a = {i: _shape(s) for i, s in getattr(theirs, method + suffix).thrift_spec.items()}
                b = {i: _shape(s) for i, s in getattr(mine, method + suffix).thrift_spec.items()}
                if a != b:
                    problems.append(f"{service_name}.{method}{suffix}: {b} != template {a}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ours", type=Path, default=ROOT / "idl" / "idl_rpc.thrift")
    parser.add_argument("--template", type=Path, default=ROOT / "tests" / "fixtures" / "seed_idl_rpc.thrift")
    args = parser.parse_args(argv)
    try:
        ours = thriftpy2.load(str(args.ours), module_name="ours_thrift")
    except Exception as e:  # thriftpy2's parser errors share no base class
        print(f"incompatible: {args.ours} does not load with thriftpy2: {e}", file=sys.stderr)
        return 1
    template = thriftpy2.load(str(args.template), module_name="template_thrift")
    problems = differences(ours, template)
    for problem in problems:
        print(f"incompatible: {problem}", file=sys.stderr)
    if not problems:
        print(f"{args.ours.name} loads and is wire-compatible with {args.template.name}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
