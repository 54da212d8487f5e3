"""Property-based fuzzing of reverie serve over loopback: every malformed request (bad JSON,
non-object bodies, unknown keys, missing keys, wrong types, out-of-range values, bad Unicode,
oversized or deeply nested bodies, bad switches, bad paths and methods) gets a 4xx with an
OpenAI error body; never a 5xx, and no malformed request writes anything.

The default run sends 1,100 requests (a few seconds); `make test-slow` sends 20,000."""

import http.client
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reverie.serve.config import ServeConfig
from reverie.serve.server import Running
from reverie.serve.service import Service

CHAT = {"model": "world", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
# endpoint -> (valid body, {field: kind}, required fields)
ENDPOINTS = {
    "/v1/chat/completions": (CHAT, {"model": "str", "messages": "list", "max_tokens": "int",
                                    "temperature": "float", "top_p": "float", "n": "int",
                                    "stream": "bool", "stop": "strlist", "seed": "int",
                                    "reverie": "obj", "stream_options": "obj", "user": "str"},
                             {"model", "messages"}),
    "/v1/completions": ({"model": "world", "prompt": "Q: Hi\nA:", "max_tokens": 1},
                        {"model": "str", "prompt": "strlist", "max_tokens": "int",
                         "temperature": "float", "n": "int", "echo": "bool"},
                        {"model", "prompt"}),
    "/v1/episodes": ({"text": "A fuzzed fact."}, {"text": "str", "source": "str",
                                                  "private": "bool", "pinned": "bool",
                                                  "feedback": "float", "metadata": "obj",
                                                  "created_at": "float"}, {"text"}),
    "/v1/feedback": ({"episode_id": 1, "importance": 0.5},
                     {"episode_id": "int", "completion_id": "str", "importance": "float"},
                     {"episode_id"}),
    "/v1/sleep": ({"tenant": "fuzz"}, {"tenant": "str"}, set()),
    "/v1/snapshots/night-1/activate": ({"tenant": "fuzz"}, {"tenant": "str"}, set()),
}
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=20))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=8), inner,
                                                                     max_size=4)), max_leaves=12)
WRONG = {  # values no field of that kind accepts (None is left out: optional fields take it)
    "str": st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False),
                     st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3),
                                                                          st.integers())),
    "int": st.one_of(st.booleans(), st.floats(allow_nan=False).filter(lambda f: f != int(f)
                                                                      if abs(f) < 1e15 else True),
                     st.text(max_size=5), st.lists(st.integers(), max_size=2)),
    "float": st.one_of(st.booleans(), st.text(max_size=5), st.lists(st.floats(), max_size=2),
                       st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)),
    "bool": st.one_of(st.integers(), st.floats(allow_nan=False), st.text(max_size=5)),
    "list": st.one_of(st.integers(), st.text(max_size=5), st.booleans(),
                      st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)),
    "strlist": st.one_of(st.integers(), st.booleans(), st.lists(st.integers(), min_size=1,
                                                               max_size=3)),
    "obj": st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
                     st.booleans()),
}
OUT_OF_RANGE = {"max_tokens": st.one_of(st.integers(max_value=0), st.integers(33, 10**30)),
                "temperature": st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=2.01)),
                "top_p": st.one_of(st.floats(max_value=0), st.floats(min_value=1.01)),
                "n": st.one_of(st.integers(max_value=0), st.integers(5, 10**6)),
                "feedback": st.floats(min_value=1.01), "importance": st.floats(max_value=-0.01),
                "episode_id": st.one_of(st.integers(max_value=0), st.integers(min_value=2**63))}


@st.composite
def malformed(draw):
    """-> (method, path, body bytes, headers)."""
    path = draw(st.sampled_from(sorted(ENDPOINTS)))
    valid, fields, required = ENDPOINTS[path]
    body = dict(valid)
    kind = draw(st.sampled_from(["bytes", "not_object", "unknown_key", "missing", "wrong_type",
                                 "out_of_range", "surrogate", "nested", "too_big", "switch",
                                 "route"]))
    headers = {}
    if kind == "bytes":
        raw = draw(st.binary(min_size=1, max_size=60))
        try:
            json.loads(raw)
            raw = b"{" + raw                          # make sure it does not parse
        except ValueError:
            pass
        return "POST", path, raw, headers
    if kind == "not_object":
        # (null is left out: it is "no body", which /v1/sleep and activate accept)
        value = draw(st.one_of(SCALARS.filter(lambda v: v is not None), st.lists(JSON, max_size=3)))
        return "POST", path, json.dumps(value).encode(), headers
    if kind == "unknown_key":
        key = draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in fields))
        body[key] = draw(JSON)
    elif kind == "missing" and required:
        body.pop(draw(st.sampled_from(sorted(required))))
    elif kind in ("wrong_type", "missing"):
        field = draw(st.sampled_from(sorted(fields)))
        body[field] = draw(WRONG[fields[field]])
    elif kind == "out_of_range" and set(OUT_OF_RANGE) & set(fields):
        field = draw(st.sampled_from(sorted(set(OUT_OF_RANGE) & set(fields))))
        body[field] = draw(OUT_OF_RANGE[field])
    elif kind == "surrogate":
        raw = json.dumps(body)[:-1] + ', "x": "\\ud83' + draw(st.sampled_from("0123456789abcdef"))
        return "POST", path, (raw + '"}').encode(), headers
    elif kind == "nested":
        depth = draw(st.integers(1200, 3000))
        return "POST", path, b'{"a": ' + b"[" * depth + b"]" * depth + b"}", headers
    elif kind == "too_big":
        body["text"] = "x" * draw(st.integers(20_001, 40_000))
    elif kind == "switch" and path == "/v1/chat/completions":
        headers["X-Reverie-Recall"] = draw(st.text(min_size=1, max_size=8).filter(
            lambda v: v.strip().lower() not in ("on", "off", "true", "false", "1", "0")
            and v.isascii() and v.isprintable()))
    elif kind == "route":
        method, suffix = draw(st.sampled_from([("GET", ""), ("PUT", ""), ("DELETE", ""),
                                               ("POST", "x"), ("PATCH", "")]))
        return method, path + suffix, json.dumps(body).encode(), headers
    else:                                            # fall back to an unknown key
        body["\x7f"] = 1
    return "POST", path, json.dumps(body).encode(), headers


@pytest.fixture(scope="module")
def server(tmp_path_factory, world_backend):
    cfg = ServeConfig(data=str(tmp_path_factory.mktemp("fuzz")), max_tokens=32,
                      default_max_tokens=1, max_body_bytes=20_000)
    with Running(Service(cfg, {"key-fuzz": "fuzz"}, "key-admin", backend=world_backend)) as s:
        yield s


class Client:
    def __init__(self, port):
        self.port, self.conn, self.sent = port, None, 0

    def send(self, method, path, body, headers):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self.conn.request(method, path, body=body, headers={
                    "Authorization": "Bearer key-fuzz", "Content-Type": "application/json",
                    **headers})
                r = self.conn.getresponse()
                data = r.read()
                self.sent += 1
                if r.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise


def fuzz(server, n: int):
    client = Client(server.port)
    statuses: dict = {}

    @settings(max_examples=n, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(malformed())
    def one(request):
        method, path, body, headers = request
        status, data = client.send(method, path, body, headers)
        statuses[status] = statuses.get(status, 0) + 1
        assert 400 <= status < 500, (status, method, path, body[:200], data[:300])
        err = json.loads(data)["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"]

    one()
    return client.sent, statuses


def stored(server) -> int:
    tenant = server.service.tenants.get("fuzz")
    return sum(tenant.episode_counts().values())


def test_a_thousand_malformed_requests_get_4xx_and_write_nothing(server):
    before = stored(server)
    sent, statuses = fuzz(server, 1100)
    assert sent >= 1000 and all(400 <= s < 500 for s in statuses)
    assert {400, 404, 405, 413} <= set(statuses)
    assert stored(server) == before == 0
    assert server.service.nights.jobs == {}               # no malformed request started a night


@pytest.mark.slow
def test_twenty_thousand_malformed_requests(server):
    sent, statuses = fuzz(server, 20_000)
    assert sent >= 20_000 and all(400 <= s < 500 for s in statuses)
    assert stored(server) == 0 and server.service.nights.jobs == {}
