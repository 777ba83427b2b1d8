"""Value equality for verification and rerun checks: NaN equals NaN, infinities and zeros keep
their sign (-0.0 is not 0.0), and kinds must agree (a bool is not an int, an int not a float)."""

from __future__ import annotations

import math


def _kind(v):
    if isinstance(v, bool):
        return bool
    if isinstance(v, int):
        return int  # BSON int32/int64 (bson.Int64 is an int subclass)
    if isinstance(v, float):
        return float
    if isinstance(v, dict):
        return dict
    if isinstance(v, (list, tuple)):
        return list
    return type(v)


def same_value(a, b) -> bool:
    if _kind(a) is not _kind(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return a == b


def diff_documents(expected, actual, path: str = "") -> list[str]:
    """Human-readable differences: 'field a.b: source X, target Y'."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for k in expected:
            p = f"{path}.{k}" if path else k
            if k not in actual:
                out.append(f"field {p}: source {show(expected[k])}, target (missing)")
            else:
                out += diff_documents(expected[k], actual[k], p)
        for k in actual:
            if k not in expected:
                p = f"{path}.{k}" if path else k
                out.append(f"field {p}: source (missing), target {show(actual[k])}")
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"field {path}: source {len(expected)} elements, target {len(actual)} elements"]
        out = []
        for i, (a, b) in enumerate(zip(expected, actual)):
            out += diff_documents(a, b, f"{path}[{i}]")
        return out
    if not same_value(expected, actual):
        return [f"field {path}: source {show(expected)}, target {show(actual)}"]
    return []


def show(v) -> str:
    text = repr(v)
    return text if len(text) <= 120 else text[:117] + "..."
