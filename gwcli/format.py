"""How gwcli writes sizes, rates and ``info`` blocks (pure functions, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

_UNITS = ("b", "K", "M", "G", "T", "P", "E")


def human_size(num: int | float | None) -> str:
    """``1073741824`` -> ``1G``; ``1610612736`` -> ``1.5G``; ``0`` -> ``0b``; None -> ``?``.

    Exact multiples print without decimals, as ceph-iscsi showed them (``8G``, ``5K``);
    other values get one decimal in the largest unit that keeps the number >= 1
    (ceph-iscsi printed such values in bytes).
    """
    if num is None:
        return "?"
    value = float(num)
    if value < 0:
        return "-" + human_size(-value)
    unit = 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    if value == int(value):
        return f"{int(value)}{_UNITS[unit]}"
    return f"{value:.1f}{_UNITS[unit]}"


def human_rate(bytes_per_second: float | None) -> str:
    """MB/s with one decimal (top's unit); ``-`` when unknown."""
    if bytes_per_second is None:
        return "-"
    return f"{bytes_per_second / 1e6:.1f}"


def human_latency(seconds: float | None) -> str:
    """Milliseconds with two decimals; ``-`` when no operation completed in the interval."""
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.2f}"


def label(name: str) -> str:
    """``control_values`` -> ``Control Values`` (the ``info`` label style of ceph-iscsi)."""
    return name.replace("_", " ").title()


def info_block(fields: Iterable[tuple[str, Any]]) -> str:
    """Aligned ``Label .. value`` lines; dicts become ``- key .. value`` lines, lists stack.

    An empty dict prints ``UNDEFINED`` and ``None`` prints an empty value, as ceph-iscsi did.
    """
    fields = list(fields)
    if not fields:
        return ""
    width = max(len(label(name)) for name, _ in fields)
    lines: list[str] = []
    for name, value in fields:
        title = label(name)
        if isinstance(value, Mapping) and value:
            lines.append(title)
            key_width = max(len(str(k)) for k in value)
            for key in sorted(value, key=str):
                inner = value[key]
                if isinstance(inner, Mapping):
                    inner = ", ".join(f"{k}={v}" for k, v in inner.items())
                lines.append(f"- {str(key):<{key_width}} .. {_text(inner)}")
            continue
        if isinstance(value, Mapping):
            value = "UNDEFINED"
        if isinstance(value, (list, tuple)):
            items = [str(v) for v in value] or [""]
            lines.append(f"{title:<{width}} .. {items[0]}")
            lines.extend(" " * (width + 4) + item for item in items[1:])
            continue
        lines.append(f"{title:<{width}} .. {_text(value)}")
    return "\n".join(line.rstrip() for line in lines)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
