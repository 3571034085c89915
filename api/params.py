"""Request parameters from a form body (ceph-iscsi's encoding), a JSON object body, or the
query string, read with one set of typed accessors.

ceph-iscsi clients send ``application/x-www-form-urlencoded`` fields: lists comma-separated,
``controls`` as a JSON string, booleans as ``true``/``false``.  A JSON body may use real
types instead (``"controls": {...}``, ``"members": [...]``, ``"skipchecks": true``); both
work everywhere.  GET parameters may come in the query string or, as gwcli sends them, in a
form body.  Unknown parameters are ignored, as ceph-iscsi does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Request

from api.errors import ApiError, bad_request
from gateway.settings import bool_word


class Params:
    """The parameters of one request."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = dict(values)

    @classmethod
    def from_request(cls, request: Request) -> Params:
        values: dict[str, Any] = dict(request.args.items())
        if request.is_json:
            raw = request.get_data(cache=True)
            if raw.strip():
                try:
                    body = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    raise bad_request("the request body is not valid JSON") from None
                if not isinstance(body, dict):
                    raise bad_request("a JSON request body must be an object of parameters, "
                                      'e.g. {"disk": "rbd/disk1"}')
                values.update(body)
        else:
            values.update(request.form.items())
        return cls(values)

    def has(self, name: str) -> bool:
        return self.values.get(name) is not None

    def text(self, name: str, default: str | None = None, *, required: bool = False,
             hint: str = "") -> str | None:
        """A string parameter; JSON numbers are accepted and turned into text."""
        value = self.values.get(name)
        if value is None:
            if required:
                raise bad_request(f"parameter '{name}' is required{': ' + hint if hint else ''}")
            return default
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return str(value)
        if not isinstance(value, str):
            raise bad_request(f"parameter '{name}' must be a string{': ' + hint if hint else ''}")
        if "\x00" in value:
            raise bad_request(f"parameter '{name}' contains a NUL character")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.values.get(name)
        if value is None or value == "":
            return default
        flag = bool_word(value)
        if flag is not None:
            return flag
        raise bad_request(f"parameter '{name}' must be true or false, got {str(value)[:40]!r}")

    def integer(self, name: str, default: int | None = None, low: int | None = None,
                high: int | None = None) -> int | None:
        value = self.values.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            raise bad_request(f"parameter '{name}' must be a whole number, got {value!r}")
        try:
            number = int(str(value).strip(), 10)
        except ValueError:
            raise bad_request(f"parameter '{name}' must be a whole number, got {str(value)[:40]!r}") from None
        if (low is not None and number < low) or (high is not None and number > high):
            raise bad_request(f"parameter '{name}' must be between {low} and {high}, got {number}")
        return number

    def number(self, name: str, default: float | None = None, low: float = 0.0,
               high: float = 3600.0) -> float | None:
        value = self.values.get(name)
        if value is None or value == "":
            return default
        try:
            number = float(str(value).strip())
        except ValueError:
            raise bad_request(f"parameter '{name}' must be a number of seconds, "
                              f"got {str(value)[:40]!r}") from None
        if not low <= number <= high:  # also refuses nan
            raise bad_request(f"parameter '{name}' must be between {low:g} and {high:g}, got {number:g}")
        return number

    def names(self, name: str) -> list[str]:
        """A list: a JSON array of strings, or comma-separated text (blanks dropped)."""
        value = self.values.get(name)
        if value is None:
            return []
        if isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise bad_request(f"parameter '{name}' must be a list of strings")
            items: Iterable[str] = value
        else:
            items = (self.text(name) or "").split(",")
        return [v.strip() for v in items if v.strip()]

    def obj(self, name: str, example: str) -> dict[str, Any] | None:
        """A JSON object: given as an object in a JSON body, or as JSON text in a form."""
        value = self.values.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise bad_request(f"parameter '{name}' must be a JSON object, e.g. {example}") from None
        if not isinstance(value, dict):
            raise bad_request(f"parameter '{name}' must be a JSON object, e.g. {example}")
        return value

    def choice(self, name: str, allowed: Iterable[str], default: str | None = None,
               status: int = 400, what: str = "") -> str | None:
        value = self.text(name)
        if value is None or value == "":
            return default
        options = tuple(allowed)
        if value not in options:
            raise ApiError(status, f"{what or name} '{value[:60]}' is invalid; use "
                                   f"{', '.join(options)}")
        return value

    def credentials(self) -> tuple[str, str, str, str]:
        """The four CHAP fields (absent = empty = no CHAP), as ceph-iscsi reads them."""
        return (self.text("username", "") or "", self.text("password", "") or "",
                self.text("mutual_username", "") or "", self.text("mutual_password", "") or "")

    def any_of(self, *names: str) -> bool:
        return any(self.values.get(n) not in (None, "") for n in names)
