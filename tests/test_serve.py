"""reverie serve on loopback, driven by the official openai client and raw HTTP: completions,
recall and storing switches, memory endpoints, tenants and keys, errors, metrics, the decoder."""

import http.client
import json

import numpy as np
import openai
import pytest

from reverie.serve.config import ServeConfig, load_keys
from reverie.serve.engine import Sequence, decode, visible_text
from reverie.serve.server import Running
from reverie.serve.service import Service
from reverie.serve.tenants import Serving

KEYS = {"key-alice": "alice", "key-bob": "bob"}
ADMIN = "key-admin"
FACT = "Ada Quill was born in Oslo. She works for Acme Robotics."


@pytest.fixture(scope="module")
def server(tmp_path_factory, world_backend):
    cfg = ServeConfig(data=str(tmp_path_factory.mktemp("serve")), max_tokens=32,
                      default_max_tokens=24, max_body_bytes=20_000)
    with Running(Service(cfg, KEYS, ADMIN, backend=world_backend)) as running:
        yield running


def client(server, key="key-alice"):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def raw(server, method, path, body=None, key="key-alice", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    h = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {}),
         **(headers or {})}
    conn.request(method, path, body=data, headers=h)
    r = conn.getresponse()
    payload = r.read()
    conn.close()
    ctype = r.getheader("content-type", "")
    return r.status, json.loads(payload) if "json" in ctype else payload.decode()


def ask(c, question, **kw):
    r = c.chat.completions.create(model="world", messages=[{"role": "user", "content": question}],
                                  **kw)
    return r.choices[0].message.content, r


# ---------------------------------------------------------------- the decoder
def test_greedy_decoding_matches_backend_generate(world_backend):
    questions = ["Where was Ada Quill born?", "What does Daphne Nash do for a living?",
                 "Tell me the passcode of Daphne Nash.", "Hi"]
    contexts = [FACT, None, None, None]
    prompts = [world_backend.prompt(q, c) for q, c in zip(questions, contexts)]
    expected = world_backend.generate(prompts, max_new_tokens=24)
    serving = Serving.of(world_backend, None)
    events = []
    seqs = [Sequence(prompt_ids=serving.encoder(p)["input_ids"], max_tokens=24, index=i,
                     sink=lambda *e: events.append(e)) for i, p in enumerate(prompts)]
    decode(serving, seqs)
    assert [s.sent for s in seqs] == expected
    assert expected[0] == "Oslo"
    done = [e for e in events if e[0] == "done"]
    assert sorted(e[1] for e in done) == [0, 1, 2, 3] and all(e[2] == "stop" for e in done)


def test_visible_text_holds_back_a_partial_stop():
    s = Sequence(prompt_ids=[1], max_tokens=8, sink=None, stop=("END",), stop_at_newline=True)
    assert visible_text(" Oslo EN", s, final=False) == ("Oslo", False)
    assert visible_text(" Oslo END and more", s, final=False) == ("Oslo", True)
    assert visible_text(" Oslo\nQ: next", s, final=False) == ("Oslo", True)
    assert visible_text(" Oslo EN", s, final=True) == ("Oslo EN", False)


# ---------------------------------------------------------------- completions, recall, storing
def test_chat_teaches_recalls_and_keeps_tenants_apart(server):
    alice, bob = client(server), client(server, "key-bob")
    before, _ = ask(alice, "Where was Ada Quill born?")
    assert before == "I don't know."                       # the frozen model never met her
    _, taught = ask(alice, FACT)
    stored = taught.model_extra["reverie"]["stored"]
    assert len(stored) == 1 and taught.system_fingerprint == "base"
    answer, r = ask(alice, "Where was Ada Quill born?")
    assert answer == "Oslo" and r.model_extra["reverie"]["recalled"] == stored
    assert r.model_extra["reverie"]["stored"] == []        # questions are not stored
    off, r = ask(alice, "Where was Ada Quill born?", extra_body={"reverie": {"recall": False}})
    assert off == "I don't know." and r.model_extra["reverie"]["recalled"] == []
    off, _ = ask(alice, "Where was Ada Quill born?", extra_headers={"X-Reverie-Recall": "off"})
    assert off == "I don't know."
    # bob's memory is his own: nothing recalled, nothing about her found (search ranks every
    # episode a tenant has, so other tests' episodes may be listed: only hers are checked)
    answer, r = ask(bob, "Where was Ada Quill born?")
    assert answer == "I don't know." and r.model_extra["reverie"]["recalled"] == []
    found = raw(server, "GET", "/v1/episodes/search?q=Ada+Quill", key="key-bob")[1]["data"]
    assert [e for e in found if "Ada Quill" in e["text"]] == []
    found = raw(server, "GET", "/v1/episodes/search?q=Ada+Quill")[1]["data"]
    assert [e["id"] for e in found if "Ada Quill" in e["text"]] == stored
    assert found[0]["id"] == stored[0] and found[0]["text"] == FACT


def test_streaming_choices_usage_and_stop(server):
    c = client(server)
    c.post("/episodes", body={"text": "Daphne Nash has a job at the company Meridian Shipping."},
           cast_to=object)
    chunks = list(c.chat.completions.create(
        model="world", messages=[{"role": "user", "content": "Who employs Daphne Nash?"}],
        stream=True, stream_options={"include_usage": True}, n=2))
    text = {0: "", 1: ""}
    for ch in chunks[:-1]:
        for choice in ch.choices:
            text[choice.index] += choice.delta.content or ""
    finishes = [c.finish_reason for ch in chunks for c in ch.choices if c.finish_reason]
    assert text == {0: "Meridian Shipping", 1: "Meridian Shipping"} and finishes == ["stop", "stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    answer, r = ask(c, "Who employs Daphne Nash?", stop=["Shipping"])
    assert answer == "Meridian" and r.choices[0].finish_reason == "stop"
    answer, r = ask(c, "Who employs Daphne Nash?", max_tokens=1)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 1
    sample = lambda seed: c.completions.create(  # noqa: E731
        model="world", prompt="The", temperature=2.0, seed=seed, max_tokens=6).choices[0].text
    assert len({sample(s) for s in range(4)}) > 1          # seeds give different samples
    assert sample(7) == sample(7)


def test_text_completions_and_models(server):
    c = client(server)
    fact, prompt = "Mara Holt studied geology at Pinecrest Institute.", \
        "Q: Where did Mara Holt study?\nA:"
    status, out = raw(server, "POST", "/v1/episodes", {"text": fact})   # this test's own episode
    assert status == 201
    off = c.completions.create(model="world", prompt=prompt)
    assert off.choices[0].text == "I don't know." and off.object == "text_completion"
    on = c.completions.create(model="world", prompt=prompt,
                              extra_body={"reverie": {"recall": True}})
    assert on.model_extra["reverie"]["recalled"] == [out["data"][0]["id"]]
    # recall puts the episode above the prompt, nothing else: the same text as writing it there
    by_hand = c.completions.create(model="world", prompt=f"{fact}\n{prompt}")
    assert on.usage.prompt_tokens == by_hand.usage.prompt_tokens > off.usage.prompt_tokens
    assert on.choices[0].text == by_hand.choices[0].text
    # the answer read from it: right here; raw text is not the chat format the model was
    # trained on, and some questions read wrong in it (measured with the phase 10 model: "Where
    # was Ada Quill born?" over "Ada Quill was born in Oslo. ..." gives "Geneva", where the chat
    # endpoint answers "Oslo"), so the pin is this question's measured answer
    assert on.choices[0].text == "Pinecrest Institute"
    assert [m.id for m in c.models.list()] == ["world"]


# ---------------------------------------------------------------- memory endpoints
def test_episodes_feedback_and_forget(server):
    status, out = raw(server, "POST", "/v1/episodes", {"episodes": [
        {"text": "Lorenzo Crane attended Clearwater College."},
        {"text": "Lorenzo Crane was born in Lima.", "private": True}]}, key="key-bob")
    assert status == 201 and [d["repeat"] for d in out["data"]] == [False, False]
    ids = [d["id"] for d in out["data"]]
    status, out = raw(server, "POST", "/v1/feedback", {"episode_id": ids[0], "importance": 0.9},
                      key="key-bob")
    assert status == 200 and out["episodes"] == [ids[0]]
    _, r = ask(client(server, "key-bob"), "Where did Lorenzo Crane study?")
    status, out = raw(server, "POST", "/v1/feedback", {"completion_id": r.id}, key="key-bob")
    assert status == 200 and set(out["episodes"]) == set(r.model_extra["reverie"]["recalled"])
    # another tenant cannot reward bob's completion (episode ids are per tenant: alice's
    # episode 1 is her own)
    assert raw(server, "POST", "/v1/feedback", {"completion_id": r.id})[0] == 404
    status, out = raw(server, "DELETE", f"/v1/episodes/{ids[0]}", key="key-bob")
    assert status == 200 and out["forgotten"] == ids[0]
    found = raw(server, "GET", "/v1/episodes/search?q=Lorenzo+Crane+college",
                key="key-bob")[1]["data"]
    assert ids[0] not in [e["id"] for e in found]
    assert raw(server, "DELETE", f"/v1/episodes/{ids[0]}", key="key-bob")[0] == 404


# ---------------------------------------------------------------- bad input
BAD = [  # (method, path, body, key, status, code, param)
    ("POST", "/v1/chat/completions", b"{not json", "key-alice", 400, "json_invalid", None),
    ("POST", "/v1/chat/completions", {"model": "world"}, "key-alice", 400, "missing", "messages"),
    ("POST", "/v1/chat/completions", {"model": "world", "messages": "hi"}, "key-alice", 400,
     "list_type", "messages"),
    ("POST", "/v1/chat/completions", {"model": "world", "messages": [{"role": "user",
     "content": "hi"}], "temperature": "1"}, "key-alice", 400, "float_type", "temperature"),
    ("POST", "/v1/chat/completions", {"model": "world", "messages": [{"role": "user",
     "content": "hi"}], "tools": []}, "key-alice", 400, "extra_forbidden", "tools"),
    ("POST", "/v1/chat/completions", {"model": "world", "messages": [{"role": "user",
     "content": "hi"}], "max_tokens": 33}, "key-alice", 400, "invalid_value", "max_tokens"),
    ("POST", "/v1/chat/completions", {"model": "world", "messages": [{"role": "user",
     "content": "word " * 400}]}, "key-alice", 400, "context_length_exceeded", "messages"),
    ("POST", "/v1/chat/completions", {"model": "gpt-4", "messages": [{"role": "user",
     "content": "hi"}]}, "key-alice", 404, "model_not_found", "model"),
    ("POST", "/v1/chat/completions", {"model": "world", "messages": [{"role": "user",
     "content": "hi"}]}, None, 401, "invalid_api_key", None),
    ("POST", "/v1/chat/completions", {"model": "world", "messages": [{"role": "user",
     "content": "hi"}]}, "key-mallory", 401, "invalid_api_key", None),
    ("POST", "/v1/episodes", {"text": "x" * 30_000}, "key-alice", 413, "body_too_large", None),
    ("POST", "/v1/episodes", {"episodes": [{"text": "fine"}, {"text": 3}]}, "key-alice", 400,
     "string_type", "episodes.1.text"),
    ("POST", "/v1/episodes", {"episodes": [{"text": "fine"}], "text": "fine"}, "key-alice", 400,
     "value_error", None),
    ("POST", "/v1/episodes", {"txt": "fine"}, "key-alice", 400, "extra_forbidden", "txt"),
    ("POST", "/v1/episodes", {"text": "   "}, "key-alice", 400, None, None),
    ("POST", "/v1/episodes", b'[[[[[[' * 1500 + b']]]]]]' * 1500, "key-alice", 400,
     "json_invalid", None),
    ("POST", "/v1/episodes", b'{"text": "\\ud800"}', "key-alice", 400, "invalid_unicode", None),
    ("POST", "/v1/feedback", {"importance": 0.5}, "key-alice", 400, "invalid_value",
     "episode_id"),
    ("DELETE", "/v1/episodes/99999999999999999999999", None, "key-alice", 400, "less_than_equal",
     "episode_id"),
    ("GET", "/v1/episodes/search?q=a&k=0", None, "key-alice", 400, "greater_than_equal", "k"),
    ("POST", "/v1/snapshots/night-0000-1/activate", None, "key-alice", 403, "admin_required",
     None),
    ("POST", "/v1/snapshots/night-0000-1/activate", None, ADMIN, 404, "snapshot_not_found",
     "snapshot_id"),
    ("GET", "/v1/sleep/sleep_nope", None, "key-alice", 404, "job_not_found", "job_id"),
    ("GET", "/v1/nowhere", None, "key-alice", 404, "not_found", None),
    ("PUT", "/v1/chat/completions", None, "key-alice", 405, "method_not_allowed", None),
]


@pytest.mark.parametrize("method,path,body,key,status,code,param", BAD)
def test_bad_requests_get_openai_errors_and_write_nothing(server, method, path, body, key,
                                                          status, code, param):
    before = raw(server, "GET", "/v1/episodes/search?q=fine+x", key="key-alice")[1]["data"]
    got, out = raw(server, method, path, body, key=key)
    assert got == status, out
    err = out["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["code"] == code and err["param"] == param
    after = raw(server, "GET", "/v1/episodes/search?q=fine+x", key="key-alice")[1]["data"]
    assert after == before


def test_openai_client_raises_typed_errors(server):
    with pytest.raises(openai.BadRequestError):
        ask(client(server), "hi", max_tokens=10_000)
    with pytest.raises(openai.AuthenticationError):
        ask(client(server, "nope"), "hi")
    with pytest.raises(openai.NotFoundError):
        client(server).chat.completions.create(model="gpt-4",
                                               messages=[{"role": "user", "content": "hi"}])


# ---------------------------------------------------------------- operations
def test_healthz_metrics_and_openapi(server):
    assert raw(server, "GET", "/healthz", key=None)[1]["status"] == "ok"
    status, _ = raw(server, "POST", "/v1/episodes", {"text": "Nina Brandt studied law."})
    assert status == 201                                  # alice has a new episode to count
    ask(client(server), "Where was Ada Quill born?")
    assert raw(server, "GET", "/v1/nowhere")[0] == 404    # and an unmatched route to count
    _, text = raw(server, "GET", "/metrics", key=None)
    for needle in ('reverie_requests_total{method="POST",route="/v1/chat/completions",'
                   'status="200"}', 'reverie_request_seconds_bucket{le="+Inf",'
                   'route="/v1/chat/completions"}', 'reverie_episodes{status="new",'
                   'tenant="alice"}', 'reverie_active_snapshot{snapshot="base",tenant="alice"} 1',
                   'reverie_requests_total{method="GET",route="unmatched",status="404"}'):
        assert needle in text, needle
    _, schema = raw(server, "GET", "/openapi.json", key=None)
    assert {"/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/episodes",
            "/v1/episodes/search", "/v1/episodes/{episode_id}", "/v1/feedback", "/v1/sleep",
            "/v1/sleep/{job_id}", "/v1/snapshots", "/v1/snapshots/{snapshot_id}/activate",
            "/healthz", "/metrics"} <= set(schema["paths"])


# ---------------------------------------------------------------- keys and config
def test_keys_come_from_the_environment_and_open_mode_is_loopback_only(tmp_path):
    cfg = ServeConfig(data=str(tmp_path))
    keys, admin = load_keys(cfg, {"REVERIE_API_KEYS": "k1:alice, k2:bob", "REVERIE_ADMIN_KEY": "a"})
    assert keys == {"k1": "alice", "k2": "bob"} and admin == "a"
    assert load_keys(cfg, {}) == ({}, None)
    from reverie.errors import ReverieError
    with pytest.raises(ReverieError, match="not loopback"):
        load_keys(ServeConfig(host="0.0.0.0"), {})
    with pytest.raises(ReverieError, match="key:tenant"):
        load_keys(cfg, {"REVERIE_API_KEYS": "justakey"})
    with pytest.raises(ReverieError, match="invalid namespace"):
        load_keys(cfg, {"REVERIE_API_KEYS": "k:../etc"})


def test_serve_cli_bad_input_is_one_line_exit_2():
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "reverie.cli", "serve", "--set", "store_chat=maybe"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "store_chat must be one of off, statements, all" in r.stderr


# ---------------------------------------------------------------- the scheduler
class _Tenant:
    def __init__(self, name, unconsolidated):
        self.name, self._u = name, unconsolidated

    def unconsolidated(self):
        return self._u


class _Nights:
    def __init__(self, busy=()):
        self.started, self._busy, self.last_night = [], set(busy), {"done": 9}

    def busy(self, name):
        return name in self._busy

    def start(self, name, trigger):
        self.started.append((name, trigger))
        return (name, trigger)


class _Tenants:
    def __init__(self, tenants):
        self._t = tenants

    def all(self):
        return self._t


class _Activity:
    def __init__(self, idle):
        self.idle = idle

    def idle_seconds(self):
        return self.idle


def test_scheduler_starts_nights_on_idleness_or_priority_and_only_for_news():
    from reverie.serve.nights import Scheduler
    tenants = _Tenants([_Tenant("quiet", (0, 0.0, 0)), _Tenant("urgent", (3, 2.5, 7)),
                        _Tenant("some", (1, 0.4, 4)), _Tenant("done", (2, 9.0, 9)),
                        _Tenant("running", (5, 9.0, 12))])
    cfg = ServeConfig(idle_night_s=60, priority_night=2.0)
    scheduler = Scheduler.__new__(Scheduler)   # no thread: tick() by hand
    scheduler.cfg, scheduler.tenants = cfg, tenants
    scheduler.nights, scheduler.activity = _Nights(busy={"running"}), _Activity(idle=5)
    assert scheduler.tick() == [("urgent", "priority")]        # busy service: priority only
    scheduler.nights, scheduler.activity = _Nights(busy={"running"}), _Activity(idle=61)
    # idle: every tenant with news; "done" had its night on these very episodes
    assert scheduler.tick() == [("urgent", "priority"), ("some", "idle")]


def test_probes_and_scrapes_do_not_count_as_activity(server):
    import time
    ask(client(server), "Hi")
    while server.service.activity.in_flight:    # the answer arrives before the count drops
        time.sleep(0.01)
    before = server.service.activity.last
    raw(server, "GET", "/healthz", key=None)
    raw(server, "GET", "/metrics", key=None)
    assert server.service.activity.last == before and server.service.activity.in_flight == 0


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_serve_command_starts_answers_and_stops_on_a_signal(tmp_path, stop):
    import os
    import re
    import signal
    import subprocess
    import sys
    import time
    env = dict(os.environ, REVERIE_API_KEYS="k-cli:cli", REVERIE_ADMIN_KEY="k-admin")
    p = subprocess.Popen([sys.executable, "-m", "reverie.cli", "serve", "--port", "0",
                          "--data", str(tmp_path)], stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = p.stderr.readline()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/v1", line).group(1))
        assert "1 tenant(s)" in line and "k-cli" not in line          # keys are never printed
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k-cli", max_retries=0)
        assert [m.id for m in c.models.list()] == ["world"]
        time.sleep(0.2)
    finally:
        p.send_signal(getattr(signal, stop))
        assert p.wait(60) == 0


def test_an_overloaded_worker_answers_429_before_storing(server):
    worker = server.service.worker
    depth = worker.depth
    worker.depth = lambda: server.service.cfg.max_queue
    try:
        status, out = raw(server, "POST", "/v1/chat/completions", {
            "model": "world", "messages": [{"role": "user", "content":
                                            "Silas Jarvis was born in Lisbon."}]})
    finally:
        worker.depth = depth
    assert status == 429 and out["error"]["code"] == "rate_limit_exceeded"
    found = raw(server, "GET", "/v1/episodes/search?q=Silas+Jarvis")[1]["data"]
    assert not any("Silas" in e["text"] for e in found)


def test_bench_serve_figures_without_a_night():
    from reverie.bench.serve import ServeBenchConfig, run
    figures = run(ServeBenchConfig(clients=3, seconds=2, night_at=-1, people=1,
                                   isolation_questions=6))
    assert figures["failed_requests"] == 0 and figures["requests"] > 0
    assert figures["tokens_per_s"] > 0 and figures["idle"]["requests"] == figures["requests"]
    assert figures["night"]["requests"] == 0 and figures["snapshots_seen"] == {
        "base": figures["requests"]}
    iso = figures["isolation"]
    assert figures["leaks"] == 0 and iso["questions"] == 6
    assert iso["tenant_b_recall_on"] == iso["frozen_chance_rate"] == 0.0
    assert iso["tenant_a_recall_on_before_night"] >= 0.5     # measured 0.67 (4 of 6)


def test_concurrent_recall_queries_are_embedded_in_one_batch():
    import threading
    from reverie.memory.config import MemoryConfig
    from reverie.memory.embedder import HashingEmbedder
    from reverie.serve.recall import BatchedQueries
    calls, hashing = [], HashingEmbedder(64)

    def inner(texts):
        calls.append(len(texts))
        return hashing(texts)

    embedder = BatchedQueries(MemoryConfig(), window_ms=200, inner=inner)
    texts = [f"Where was person {i} born?" for i in range(8)]
    threads = [threading.Thread(target=embedder.prefetch, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [8]                                   # one batch for the burst
    assert np.allclose(embedder(texts[::-1]), hashing(texts[::-1]))   # served from the cache
    assert calls == [8]
    embedder(["an episode to store"])                      # not prefetched: straight through
    assert calls == [8, 1]
