"""Request parameters: form (ceph-iscsi's encoding), JSON bodies and query strings read alike."""

import json

import pytest
from flask import Flask, request

from api.errors import ApiError
from api.params import Params

app = Flask(__name__)


def params(**kw) -> Params:
    with app.test_request_context("/x", **kw):
        return Params.from_request(request)


def test_form_fields_and_query_string_are_both_read():
    p = params(method="PUT", query_string={"wait": "5"}, data={"disk": "rbd/d1", "lun_id": "3"})
    assert p.text("disk") == "rbd/d1"
    assert p.integer("lun_id") == 3
    assert p.number("wait") == 5.0


def test_json_body_accepts_real_types_and_strings():
    body = {"skipchecks": True, "members": ["iqn.1994-05.com.redhat:a", "iqn.1994-05.com.redhat:b"],
            "controls": {"cmdsn_depth": 64}, "lun_id": 7, "nosync": "false"}
    p = params(method="PUT", json=body)
    assert p.flag("skipchecks") is True
    assert p.flag("nosync") is False
    assert p.names("members") == body["members"]
    assert p.obj("controls", "") == {"cmdsn_depth": 64}
    assert p.integer("lun_id") == 7
    assert p.text("lun_id") == "7"


def test_comma_separated_lists_drop_blanks_and_spaces():
    p = params(method="PUT", data={"ip_address": " 10.0.0.1, ,10.0.0.2 "})
    assert p.names("ip_address") == ["10.0.0.1", "10.0.0.2"]


def test_controls_as_json_text_in_a_form():
    p = params(method="PUT", data={"controls": json.dumps({"qfull_timeout": 10})})
    assert p.obj("controls", "") == {"qfull_timeout": 10}


@pytest.mark.parametrize("kwargs, call, fragment", [
    ({"data": {"controls": "{not json"}}, lambda p: p.obj("controls", "{}"), "must be a JSON object"),
    ({"data": {"controls": "[1, 2]"}}, lambda p: p.obj("controls", "{}"), "must be a JSON object"),
    ({"data": {"skipchecks": "maybe"}}, lambda p: p.flag("skipchecks"), "must be true or false"),
    ({"data": {"count": "two"}}, lambda p: p.integer("count", 1, 1, 10), "whole number"),
    ({"data": {"count": "11"}}, lambda p: p.integer("count", 1, 1, 10), "between 1 and 10"),
    ({"data": {"wait": "nan"}}, lambda p: p.number("wait"), "between"),
    ({"json": {"disk": ["a"]}}, lambda p: p.text("disk"), "must be a string"),
    ({"json": {"members": [1, 2]}}, lambda p: p.names("members"), "list of strings"),
    ({"data": {}}, lambda p: p.text("disk", required=True, hint="pool/image"),
     "'disk' is required: pool/image"),
    ({"data": {"mode": "bogus"}}, lambda p: p.choice("mode", ["create"]), "'bogus' is invalid; use create"),
])
def test_bad_values_are_400_naming_the_parameter(kwargs, call, fragment):
    p = params(method="PUT", **kwargs)
    with pytest.raises(ApiError) as err:
        call(p)
    assert err.value.status == 400
    assert fragment in err.value.message


def test_a_json_body_that_is_not_an_object_is_refused():
    with pytest.raises(ApiError) as err:
        params(method="PUT", data="[1]", content_type="application/json")
    assert err.value.status == 400 and "JSON request body must be an object" in err.value.message
    with pytest.raises(ApiError) as err:
        params(method="PUT", data="{oops", content_type="application/json")
    assert "not valid JSON" in err.value.message


def test_absent_credentials_read_as_empty_strings():
    assert params(method="PUT", data={"username": "myiscsiusername"}).credentials() == \
        ("myiscsiusername", "", "", "")


def test_choice_can_answer_405_for_actions():
    p = params(method="PUT", data={"action": "toggle"})
    with pytest.raises(ApiError) as err:
        p.choice("action", ["add", "remove"], status=405)
    assert err.value.status == 405
