"""The service end to end on the real server (loopback, random port) with the official
openai client: teach facts through chat, answer them at once through recall, sleep in a child
process while requests keep coming, swap, answer with recall off; and a second tenant that never
sees the first one's facts, in its memory or in its weights."""

import json
import os
import threading
import time
import urllib.request

import openai
import pytest

from reverie import config
from reverie.serve.config import ServeConfig
from reverie.serve.server import Running
from reverie.serve.service import Service
from reverie.world.probes import is_abstention, is_correct
from worldday import world_day

KEYS = {"key-alice": "alice", "key-bob": "bob"}
ADMIN = "key-admin"
EPOCHS = float(os.environ.get("REVERIE_TEST_EPOCHS", "12"))   # the slow test's night


def chat(c, question, **kw):
    r = c.chat.completions.create(model="world", messages=[{"role": "user", "content": question}],
                                  **kw)
    return r.choices[0].message.content, r


def get(server, path, key):
    req = urllib.request.Request(server.url + path, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        body = r.read().decode()
    return json.loads(body) if path != "/metrics" else body


def post(server, path, key, body=None):
    req = urllib.request.Request(server.url + path, data=json.dumps(body or {}).encode(),
                                 method="POST", headers={"Authorization": f"Bearer {key}",
                                                         "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read().decode())


def wait_for(server, job_id, key, timeout=900):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get(server, f"/v1/sleep/{job_id}", key)
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def delete(server, path, key):
    req = urllib.request.Request(server.url + path, method="DELETE",
                                 headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read().decode())


def run_day_and_night(tmp_path, world_backend, world, epochs: float, n_people: int,
                      gate: bool = True, forget: bool = False):
    cfg = config.load(ServeConfig, "serve-small", [f"data={tmp_path}",
                                                   f"sleep.train.epochs={epochs}",
                                                   f"gate.enabled={str(gate).lower()}"])
    lessons, questions = world_day(world, n_people)
    out = {}
    with Running(Service(cfg, KEYS, ADMIN, backend=world_backend)) as server:
        alice = openai.OpenAI(base_url=server.url + "/v1", api_key="key-alice", max_retries=0)
        bob = openai.OpenAI(base_url=server.url + "/v1", api_key="key-bob", max_retries=0)
        ask = lambda c, **kw: [chat(c, q, **kw)[0] for q, _ in questions]  # noqa: E731
        score = lambda answers: sum(  # noqa: E731
            is_correct(a, v) for a, (_, v) in zip(answers, questions))
        frozen = ask(bob, extra_body={"reverie": {"recall": False}})
        out["frozen"] = score(frozen)
        taught = []
        for lesson in lessons:                            # the day: taught through chat
            _, r = chat(alice, lesson)
            assert len(r.model_extra["reverie"]["stored"]) == 1
            taught += r.model_extra["reverie"]["stored"]
        out["recall_before"] = score(ask(alice))
        out["closed_before"] = score(ask(alice, extra_body={"reverie": {"recall": False}}))

        # the night, with requests arriving all through it
        seen, failures, stop = [], [], threading.Event()

        def traffic():
            while not stop.is_set():
                start = time.monotonic()
                try:
                    _, r = chat(alice, questions[0][0])
                    seen.append((start, time.monotonic(), r.system_fingerprint))
                except Exception as e:  # noqa: BLE001 - counted and asserted below
                    failures.append(repr(e))

        job = post(server, "/v1/sleep", "key-alice")
        assert job["status"] in ("queued", "running") and job["object"] == "sleep.job"
        thread = threading.Thread(target=traffic)
        thread.start()
        done = wait_for(server, job["id"], "key-alice")
        time.sleep(1.0)
        stop.set()
        thread.join()
        out.update(job=done, seen=seen, failures=failures)
        out["recall_after"] = score(ask(alice))
        out["closed_after"] = score(ask(alice, extra_body={"reverie": {"recall": False}}))
        _, r = chat(alice, questions[0][0])
        out["fingerprint_after"] = r.system_fingerprint
        out["snapshots"] = get(server, "/v1/snapshots", "key-alice")["data"]
        out["search"] = get(server, "/v1/episodes/search?q=" + questions[0][0].replace(" ", "+")
                            .replace("?", ""), "key-alice")["data"]
        # tenant B, with recall on and off, after A's night
        bob_on, bob_off = ask(bob), ask(bob, extra_body={"reverie": {"recall": False}})
        out["bob_fingerprint"] = chat(bob, questions[0][0])[1].system_fingerprint
        out["leaks"] = sum(is_correct(a, v) and not is_correct(f, v)
                           for ans in (bob_on, bob_off)
                           for a, f, (_, v) in zip(ans, frozen, questions))
        out["bob_same_as_frozen"] = bob_on == frozen and bob_off == frozen
        out["bob_search"] = get(server, "/v1/episodes/search?q=" + questions[0][0]
                                .replace(" ", "+").replace("?", ""), "key-bob")["data"]
        out["metrics"] = get(server, "/metrics", "key-alice")
        out["abstain_after"] = sum(map(is_abstention, ask(alice, extra_body={
            "reverie": {"recall": False}})))
        if forget:   # the admin rolls back to the base model and forward again
            sid = out["job"]["snapshot"]
            post(server, "/v1/snapshots/base/activate", ADMIN, {"tenant": "alice"})
            out["fingerprint_rolled_back"] = chat(alice, questions[0][0])[1].system_fingerprint
            post(server, f"/v1/snapshots/{sid}/activate", ADMIN, {"tenant": "alice"})
            out["fingerprint_rolled_forward"] = chat(alice, questions[0][0])[1].system_fingerprint
        if forget:   # deleting a consolidated episode reaches the weights, then swaps
            out["deleted"] = delete(server, f"/v1/episodes/{taught[0]}", "key-alice")
            out["forget_job"] = wait_for(server, out["deleted"]["job"], "key-alice")
            out["fingerprint_forgot"] = chat(alice, questions[0][0])[1].system_fingerprint
    return out, len(questions)


def check_isolation_and_no_failed_request(out):
    # no request failed during the night, and each names the one snapshot it was answered from
    assert out["failures"] == [] and len(out["seen"]) >= 2
    assert {fp for _, _, fp in out["seen"]} <= {"base", out["job"]["snapshot"] or "base"}
    # tenant B: its own base model and empty memory, whatever A taught and consolidated
    assert out["bob_fingerprint"] == "base" and out["bob_same_as_frozen"]
    assert out["leaks"] == 0 and out["bob_search"] == []


def check_swap(out):
    job = out["job"]
    assert job["status"] == "succeeded" and job["accepted"] is True, job
    sid = job["snapshot"]
    assert sid and sid != "base" and job["previous"] is None and job["swapped_at"]
    # every request that started after a response from the new snapshot was answered by it
    first_new = min((end for _, end, fp in out["seen"] if fp == sid), default=None)
    assert first_new is not None
    assert all(fp == sid for start, _, fp in out["seen"] if start > first_new)
    assert out["fingerprint_after"] == sid
    assert [s["id"] for s in out["snapshots"] if s["active"]] == [sid]
    assert 'reverie_nights_total{outcome="succeeded",tenant="alice"} 1' in out["metrics"]
    assert 'reverie_gate_decisions_total{decision="accept"} 1' in out["metrics"]
    assert 'reverie_swaps_total{tenant="alice"} 1' in out["metrics"]


def figures(out) -> dict:
    return {k: out[k] for k in ("frozen", "recall_before", "closed_before", "recall_after",
                                "closed_after", "abstain_after", "leaks")}


def test_teach_recall_sleep_swap_and_isolation(tmp_path, world_backend, world):
    # why gate off: this test is about serving through a night and the swap; what the gate
    # accepts is the gate's tests' business (the slow test below runs it)
    out, n = run_day_and_night(tmp_path, world_backend, world, epochs=1.0, n_people=1,
                               gate=False, forget=True)
    print(figures(out))
    check_isolation_and_no_failed_request(out)
    check_swap(out)
    # measured (seed 0, 1 person, 6 HELD-OUT questions): the frozen model and recall-off know
    # none before the night; recall answers 4 of 6 at once. The consolidated episode stays in
    # recall for memory.release_after_days, so recall still answers after the night, while one
    # epoch teaches the weights too little for these questions
    assert out["frozen"] == 0 and out["closed_before"] == 0
    assert out["recall_before"] >= 4
    assert [(e["status"], e["snapshot"]) for e in out["search"]] == \
        [("consolidated", out["job"]["snapshot"])]
    assert out["recall_after"] >= 4 and out["recall_after"] > out["closed_after"]
    assert out["fingerprint_rolled_back"] == "base"
    assert out["fingerprint_rolled_forward"] == out["job"]["snapshot"]
    # forgetting the one consolidated episode rebuilds the lineage without it: nothing is left
    # to replay, so the tenant is served by the base model again
    assert out["deleted"]["weights"] == "queued"
    job = out["forget_job"]
    assert job["kind"] == "forget" and job["status"] == "succeeded", job
    assert job["report"]["path"] == "exact" and job["previous"] == out["job"]["snapshot"]
    assert job["snapshot"] is None and out["fingerprint_forgot"] == "base"


@pytest.mark.slow
@pytest.mark.parametrize("gate", [True, False], ids=["gate", "no-gate"])
def test_a_full_night_answers_with_recall_off(tmp_path, world_backend, world, gate):
    """Twelve epochs (the default night) on two people. With the gate, it decides: accepted,
    the facts are answered closed-book; rejected, nothing swaps and recall still answers them.
    Without it, the night swaps and what the weights learned is measured closed-book."""
    out, n = run_day_and_night(tmp_path, world_backend, world, epochs=EPOCHS, n_people=2,
                               gate=gate)
    job = out["job"]
    print(figures(out), json.dumps(job["gate"]), job["finished_at"] - job["started_at"])
    check_isolation_and_no_failed_request(out)
    assert out["closed_before"] == 0 and out["recall_before"] >= 6
    if job["status"] == "succeeded":
        check_swap(out)
        # measured (seed 0, 2 people, 12 HELD-OUT questions, gate on or off): 6 of 12
        # closed-book after the night (night lr 5e-4; 7 with lr 1e-3), against 0 before; the
        # same 6 with recall on (the night released the consolidated episodes from recall)
        assert out["closed_after"] >= 6 if not gate else out["closed_after"] >= 2
    else:
        assert job["status"] == "rejected" and job["accepted"] is False and job["gate"]["reasons"]
        assert out["fingerprint_after"] == "base" and not any(s["active"] for s in out["snapshots"])
        assert out["recall_after"] == out["recall_before"] and out["closed_after"] == 0


@pytest.mark.slow
def test_the_scheduler_sleeps_when_the_service_is_idle(tmp_path, world_backend, world):
    cfg = config.load(ServeConfig, "serve-small", [f"data={tmp_path}", "idle_night_s=2",
                                                   "scheduler_poll_s=0.5", "gate.enabled=false"])
    lessons, _ = world_day(world, 1)
    with Running(Service(cfg, KEYS, ADMIN, backend=world_backend)) as server:
        alice = openai.OpenAI(base_url=server.url + "/v1", api_key="key-alice", max_retries=0)
        chat(alice, lessons[0])
        deadline = time.monotonic() + 600
        while not server.service.nights.jobs and time.monotonic() < deadline:
            time.sleep(0.2)
        job = next(iter(server.service.nights.jobs.values()))
        assert job.trigger == "idle" and job.tenant == "alice"
        done = wait_for(server, job.id, "key-alice")
        assert done["status"] == "succeeded" and done["snapshot"]
        time.sleep(3 * cfg.scheduler_poll_s + cfg.idle_night_s)
        assert len(server.service.nights.jobs) == 1          # nothing new: no second night
