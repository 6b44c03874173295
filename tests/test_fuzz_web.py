"""Fuzzing web uploads: random bodies and content types to /api/predict and /api/explain.

Every answer is a 200 with a prediction or a 4xx JSON error; a 5xx is a bug. (tests/test_web.py
checks each kind of bad input by hand, benchmarks/load_web.py the server under load.)
"""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from tests.fuzzing import fuzz_settings, mutated, record
from tests.test_fuzz_images import SEEDS

from cnnlab.web.app import create_app

pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from web_runs import fake_web_run

    with TestClient(
        create_app(fake_web_run(tmp_path_factory)),
        base_url="http://127.0.0.1",
        raise_server_exceptions=False,
    ) as c:
        yield c


images = st.one_of(
    *(mutated(seed, max_ops=2, hot=96) for seed in SEEDS.values()),
    st.sampled_from(list(SEEDS.values())),
    st.binary(max_size=64),
)
json_junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def requests(draw) -> tuple[str, dict, bytes]:
    """(content type, extra headers, body) of one hostile or honest request."""
    kind = draw(
        st.sampled_from(["raw", "json", "json-junk", "json-deep", "json-number", "multipart", "other"])
    )
    image = draw(st.one_of(st.sampled_from(list(SEEDS.values())), images))  # honest half the time
    if kind == "raw":
        return draw(st.sampled_from(["image/png", "image/jpeg", "application/octet-stream"])), {}, image
    if kind == "json":
        text = base64.b64encode(image).decode()
        if draw(st.booleans()):
            text = "data:image/png;base64," + text
        if draw(st.booleans()):  # damage the base64 or the wrapper
            text = draw(mutated(text.encode(), 2)).decode("latin-1")
        return "application/json", {}, json.dumps({"image": text}).encode()
    if kind == "json-junk":
        return "application/json", {}, json.dumps(draw(json_junk)).encode()
    if kind == "json-deep":  # deeper than the JSON parser's recursion limit
        depth = draw(st.integers(500, 100_000))
        return "application/json", {}, b'{"image": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == "json-number":  # more digits than int() converts
        return "application/json", {}, b'{"image": ' + b"9" * draw(st.integers(4300, 20_000)) + b"}"
    if kind == "multipart":
        boundary = draw(st.sampled_from(["xyz", "a" * 70, "-", ""]))
        name = draw(st.sampled_from(["file", "image", "", 'file"; filename="../../etc/passwd']))
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="d.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        )
        body = head.encode() + image + f"\r\n--{boundary}--\r\n".encode()
        if draw(st.booleans()):
            body = draw(mutated(body, 2))
        return f"multipart/form-data; boundary={boundary}", {}, body
    ctype = draw(st.sampled_from(["text/plain", "", "application/x-www-form-urlencoded", "image/"]))
    return ctype, {}, image


@fuzz_settings(scale=0.5)
@given(
    req=requests(),
    path=st.sampled_from(
        [
            "/api/predict",
            "/api/explain",
            "/api/predict?top=3",
            "/api/predict?top=-1",
            "/api/predict?top=x",
        ]
    ),
)
def test_uploads_get_an_answer_or_a_4xx(client, req, path):
    ctype, headers, body = req
    if ctype:
        headers = {**headers, "content-type": ctype}
    response = client.post(path, content=body, headers=headers)
    assert response.status_code < 500, (response.status_code, response.text[:300], ctype, body[:80])
    doc = response.json()
    if response.status_code == 200:
        assert "prediction" in doc or "label" in doc or doc
        outcome = "200 with a prediction"
    else:
        assert 400 <= response.status_code < 500 and isinstance(doc.get("error"), str)
        outcome = f"{response.status_code} with a JSON error"
    record("web: random uploads to /api/predict and /api/explain", outcome)


@pytest.mark.parametrize(
    "body",
    [
        b'{"image": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",  # was a 500 (RecursionError)
        b'{"image": ' + b"9" * 5000 + b"}",
    ],  # was a 500 (ValueError: int digits limit)
)
def test_hostile_json_is_a_400(client, body):
    response = client.post("/api/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and "JSON" in response.json()["error"]
