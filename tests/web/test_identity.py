"""The report's identity token and kernel-message filter, without a server."""

from __future__ import annotations

import json

import pytest

from velox.web.identity import NotSignedIn, sign_identity, verify_identity
from velox.web.voila import client_message_allowed

SECRET = "s" * 43


def test_a_token_names_its_user_until_it_expires() -> None:
    token = sign_identity("iris", SECRET, ttl=60, now=1_000)
    identity = verify_identity(token, SECRET, now=1_059)
    assert (identity.username, identity.expires) == ("iris", 1_060)
    assert sign_identity("iris", SECRET, now=1_000) != token  # a fresh nonce each time
    with pytest.raises(NotSignedIn, match="expired"):
        verify_identity(token, SECRET, now=1_060)


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.replace("iris", "omar", 1),  # another user, same signature
        lambda t: t.replace(":1060:", ":9999999999:"),  # a later expiry
        lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"),  # a changed signature
        lambda t: "omar",
        lambda t: "",
        lambda t: t + ":extra",
    ],
)
def test_a_changed_or_malformed_token_is_refused(change) -> None:
    token = sign_identity("iris", SECRET, ttl=60, now=1_000)
    with pytest.raises(NotSignedIn):
        verify_identity(change(token), SECRET, now=1_001)


def test_another_secret_or_none_is_refused() -> None:
    token = sign_identity("iris", SECRET)
    with pytest.raises(NotSignedIn, match="signature"):
        verify_identity(token, "t" * 43)
    with pytest.raises(NotSignedIn, match="secret"):
        verify_identity(token, None)


def _frame(msg_type: str, content: dict, channel: str = "shell") -> str:
    return json.dumps({"channel": channel, "header": {"msg_type": msg_type},
                       "parent_header": {}, "metadata": {}, "content": content})  # fmt: skip


@pytest.mark.parametrize(
    ("frame", "allowed"),
    [
        (_frame("kernel_info_request", {}), True),
        (_frame("comm_info_request", {"target_name": "jupyter.widget"}), True),
        (_frame("comm_open", {"target_name": "jupyter.widget.control", "data": {}}), True),
        (_frame("comm_msg", {"data": {"method": "request_states"}}), True),
        (_frame("comm_close", {"comm_id": "x"}), True),
        (_frame("execute_request", {"code": "1"}), False),
        (_frame("comm_open", {"target_name": "jupyter.widget", "data": {}}), False),
        (_frame("comm_msg", {"data": {"method": "update", "state": {"value": 1}}}), False),
        (_frame("comm_msg", {"data": {"method": "custom", "content": {"event": "click"}}}), False),
        (_frame("complete_request", {"code": "im"}), False),
        (_frame("inspect_request", {"code": "x"}), False),
        (_frame("history_request", {}), False),
        (_frame("shutdown_request", {}, channel="control"), False),
        (_frame("kernel_info_request", {}, channel="control"), False),
        (_frame("input_reply", {"value": "x"}, channel="stdin"), False),
        ("not json", False),
        (b"\x00" * 16, False),
    ],
)
def test_only_read_only_widget_messages_reach_the_kernel(frame, allowed) -> None:
    assert client_message_allowed(frame, v1=False)[0] is allowed
