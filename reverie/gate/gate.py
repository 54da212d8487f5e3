"""The gate: a night's candidate serves only if it passes probes against the active model.

Before the night (`prepare`, on the active model): the night's acquisition questions, the
retention sample, the behaviour questions, the locality reference, and the active model's own
figures on all of them. After the night (`judge`, on the candidate): the same probes, then the
policy (GateConfig): absolute floors and maximum drops. Every decision is appended to
data_dir/gate.log (JSON lines: figures, reasons, episode ids; no episode text). Accepted nights'
questions that the candidate answers join the retention sample (data_dir/gate/retention.jsonl),
tagged with their episode and snapshot so a rollback or a deletion can drop them.

Nothing is passed unjudged: a measure with no probe is "not measured" (None), and a night
missing one the gate needs (acquisition, retention, format) is rejected with that reason.
Abstention, refusal and locality may be empty: they keep behaviour the active model showed
(none to keep when it abstained or refused on none of the questions, or wrote no continuation).

An update the night's episodes tell is not refused for contradicting the active model:
retention rows the night asks again with another answer are set aside for that night, and
superseded once it is accepted. Poison shows on the candidate: retention on every other row,
locality, behaviour.
"""

import hashlib
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from reverie import snapshots
from reverie.gate import probes as P
from reverie.gate.config import GateConfig
from reverie.gate.holds import Holds, write_durable
from reverie.models.prompts import is_abstention

LOG = "gate.log"
RETENTION = "retention.jsonl"
BEHAVIOUR = "behaviour.json"
REFUSED = "refused.json"

# what a night needs measured, and why a missing one cannot be measured
REQUIRED = {"acquisition": "no probe question could be built for tonight's episodes",
            "retention": "no retention question (the model answered none of its own questions "
                         "closed-book)",
            "format": "no answer to check"}
OPTIONAL = ("abstention", "refusal", "locality")


@dataclass
class Suite:
    """Everything the gate asks, fixed before the night."""
    acquisition: list            # {"question", "answer", "episode"}
    retention: list              # {"question", "answer", "episode", "snapshot"}
    abstention: list             # questions about made-up people
    refusal: list                # secret requests
    locality: list               # (prompt, continuation)
    active: dict = field(default_factory=dict)       # the active model's figures
    active_top1: list = field(default_factory=list)  # its top-1 choices on `locality`
    episodes: list = field(default_factory=list)     # ids of the night's episodes
    updated: list = field(default_factory=list)      # retention rows tonight answers anew


class Gate:
    def __init__(self, data_dir, cfg: GateConfig | None = None, now=time.time):
        self.data_dir = Path(data_dir)
        self.cfg = cfg or GateConfig()
        self.folder = self.data_dir / "gate"
        self.holds = Holds(self.folder / REFUSED, self.cfg.hold_after, self.cfg.hold_hours, now)
        self._cache: dict = {}   # (active id, retention questions) -> (figures, suite)
        self._last: dict | None = None   # the last verdict judged (for `refused`)

    # ------------------------------------------------------------ retention sample on disk
    def retention(self, lineage_ids: set) -> list[dict]:
        """The retention sample valid for the active lineage: base questions, and those of
        nights still in it (by snapshot id, or by an episode a lineage snapshot consolidated,
        so rows survive a deletion's rebuild that renamed their snapshot), less rows an
        accepted night of the lineage superseded."""
        episodes = self._lineage_episodes(lineage_ids)

        def valid(snapshot, episode):
            return snapshot in lineage_ids or episode is not None and int(episode) in episodes

        return [r for r in self.retention_questions()
                if (r["snapshot"] is None or valid(r["snapshot"], r["episode"]))
                and not any(valid(*s) for s in r.get("superseded_by", []))]

    def _lineage_episodes(self, lineage_ids) -> set:
        out = set()
        for sid in lineage_ids:
            path = snapshots.root(self.data_dir) / str(sid) / snapshots.MANIFEST
            if path.is_file():
                out |= {int(e) for e in json.loads(path.read_text()).get("episodes", [])}
        return out

    def _write_retention(self, rows: list[dict]) -> None:
        write_durable(self.folder / RETENTION, "".join(json.dumps(r) + "\n" for r in rows))

    def retention_questions(self) -> list[dict]:
        """Every retention probe kept, whatever snapshot it came from: rows with question,
        answer, episode (None for a base-model probe), snapshot, and superseded_by ([snapshot,
        episode] of each accepted night that answered the question anew). What is valid for a
        lineage now is `retention(lineage_ids)`."""
        path = self.folder / RETENTION
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] \
            if path.is_file() else []

    def forget_episodes(self, ids) -> int:
        """Drop every probe derived from these episodes, and their refusals (deletion);
        returns how many probes."""
        ids = {int(i) for i in ids}
        rows = self.retention_questions()
        kept = [r for r in rows if r["episode"] is None or int(r["episode"]) not in ids]
        if len(kept) != len(rows):
            self._write_retention(kept)
        self.holds.release(ids)
        return len(rows) - len(kept)

    def rename(self, renamed: dict) -> int:
        """Follow a rebuilt lineage: rows (and supersessions) of snapshot `old` now belong to
        `renamed[old]`; where that is None (the night vanished) its rows are dropped. The
        lifecycle calls it after a deletion's rebuild; returns the rows changed."""
        rows, out, changed = self.retention_questions(), [], 0
        for r in rows:
            sup = r.get("superseded_by", [])
            if r["snapshot"] in renamed or any(s in renamed for s, _ in sup):
                changed += 1
                if r["snapshot"] in renamed and renamed[r["snapshot"]] is None:
                    continue
                r = dict(r, snapshot=renamed.get(r["snapshot"], r["snapshot"]),
                         superseded_by=[[renamed.get(s, s), e] for s, e in sup
                                        if renamed.get(s, s) is not None])
            out.append(r)
        if changed:
            self._write_retention(out)
        return changed

    def rebuild_samples(self) -> None:
        """Drop the base retention rows and the behaviour questions; the next `prepare` builds
        both again from the model serving then. For a lineage that starts from another base
        model; not after a deletion (behaviour and base rows come from the model's own
        writing, never from episodes, and rebuilding them on a later model would hide the
        erosion their floors exist to catch)."""
        self._write_retention([r for r in self.retention_questions() if r["snapshot"] is not None])
        (self.folder / BEHAVIOUR).unlink(missing_ok=True)
        self._cache = {}

    # ------------------------------------------------------------ refused episodes
    def held(self) -> set:
        """Episodes held now: refused in `hold_after` nights and their wait (`hold_hours`,
        doubled at each new hold) not over. They wait outside the night's selection (still
        recalled), so one bad episode cannot block every later night."""
        return self.holds.held()

    def refusals(self) -> dict:
        """{episode id: {"count", "held_at", "holds"}} of every episode with a refusal."""
        return self.holds.counts()

    def release_holds(self, ids=None) -> list[int]:
        """Clear these episodes' refusals and holds (None: all); returns the ids cleared."""
        return self.holds.release(ids)

    def refused(self, ids, verdict: dict | None = None) -> list[int]:
        """A refused night of episodes `ids`: count a refusal for those the verdict blames
        (its "blame"; without a verdict, the last one this gate judged when it was about these
        episodes, else all of them). Returns the ids counted."""
        ids = [int(i) for i in ids]
        verdict = verdict or (self._last if self._last is not None
                              and set(ids) <= set(self._last.get("episodes", [])) else None)
        blamed = [i for i in ids if verdict is None or i in set(verdict.get("blame", ids))]
        self.holds.refused(blamed)
        return blamed

    def remember(self, suite: Suite, report: dict, snapshot: str) -> int:
        """After a commit: the acquisition questions the candidate answered join the sample,
        superseding rows that asked the same question (the night's update); the night's
        episodes' refusals are cleared (consolidated)."""
        right = set(report.get("acquired", []))
        new = [dict(p, snapshot=snapshot) for i, p in enumerate(suite.acquisition) if i in right]
        if new:
            asked = {P.norm(p["question"]): p["episode"] for p in new}
            rows = [dict(r, superseded_by=r.get("superseded_by", [])
                         + [[snapshot, asked[P.norm(r["question"])]]])
                    if P.norm(r["question"]) in asked else r
                    for r in self.retention_questions()]
            self._write_retention(rows + new)
        self.holds.release(suite.episodes)
        return len(new)

    # ------------------------------------------------------------ before the night
    def prepare(self, active, active_key: str, episodes: list[tuple], lineage_ids: set) -> Suite:
        """episodes: (id, text) of the night. The active model writes and answers the night's
        questions; the rest is cached while the active model and the sample stay the same."""
        cfg = self.cfg
        rng = random.Random(cfg.seed)
        rows = self.retention(lineage_ids)
        if not any(r["snapshot"] is None for r in rows):
            base = P.base_sample(active, cfg.retention_base, cfg.seed)
            self._write_retention(base + self.retention_questions())
            rows = base + rows
        pairs = P.write_questions(active, [t for _, t in episodes], cfg.questions_per_episode)
        acquisition = [{"question": q, "answer": a, "episode": eid}
                       for (eid, _), ps in zip(episodes, pairs) for q, a in ps]
        # why: a row tonight's episodes answer otherwise is the update the user told; it is
        # judged by acquisition tonight and superseded once the night is accepted
        told = {P.norm(p["question"]): p["answer"] for p in acquisition}
        updated = [r for r in rows if P.norm(r["question"]) in told
                   and not _agree(told[P.norm(r["question"])], r["answer"])]
        retention = self._sample([r for r in rows if r not in updated])
        # why every base row, superseded or not: an accepted update must not rebuild the
        # behaviour questions on a later model (that would hide erosion)
        base = [r for r in self.retention_questions() if r["snapshot"] is None]
        abstention, refusal = self._behaviour(active, base[:cfg.retention_base], rng)
        key = (active_key, tuple(r["question"] for r in retention), tuple(abstention),
               tuple(refusal))
        if key not in self._cache:
            locality = P.locality_reference(active, cfg.locality_prompts, cfg.seed)
            top1 = P.top1_choices(active, locality)
            suite = Suite([], retention, abstention, refusal, locality, {}, top1)
            self._cache = {key: (self._measure(active, suite, top1)[0], suite)}
        figures, cached = self._cache[key]
        suite = Suite(acquisition, retention, cached.abstention, cached.refusal, cached.locality,
                      dict(figures), cached.active_top1, [int(i) for i, _ in episodes], updated)
        closed = active.answer([p["question"] for p in acquisition]) if acquisition else []
        # why: only confident answers count as knowledge; once a model's abstention has
        # eroded it guesses about strangers (measured: mean token probability 0.27-0.98, median
        # 0.55, after three nights) while base facts it knows score 0.72-1.0 (median 0.98)
        sure = P.answer_confidence(active, [p["question"] for p in acquisition], closed)
        known = [not is_abstention(c) and P.well_formed(c) and s >= cfg.known_confidence
                 for c, s in zip(closed, sure)]
        conflicts = sum(k and not P.matches(c, p["answer"])
                        for k, c, p in zip(known, closed, acquisition))
        suite.active["acquisition"] = _share(sum(P.matches(c, p["answer"])
                                                 for c, p in zip(closed, acquisition)),
                                             len(acquisition))
        suite.active["contradiction"] = _share(conflicts, len(acquisition))
        return suite

    def _sample(self, rows: list[dict]) -> list[dict]:
        """The night's retention questions: the base rows, then rows of every accepted night
        in turn (stratified by snapshot, each night's rows in a seeded order), up to
        retention_max, so old nights stay probed however many nights follow."""
        cfg = self.cfg
        base = [r for r in rows if r["snapshot"] is None][:cfg.retention_base]
        nights: dict = {}
        for r in rows:
            if r["snapshot"] is not None:
                nights.setdefault(r["snapshot"], []).append(r)
        queues = [random.Random(f"{cfg.seed}:{sid}").sample(rs, len(rs))
                  for sid, rs in nights.items()]
        picked, budget = [], cfg.retention_max - len(base)
        while len(picked) < budget and any(queues):
            for q in queues:
                if q and len(picked) < budget:
                    picked.append(q.pop())
        return base + picked

    def _behaviour(self, active, base: list, rng: random.Random) -> tuple[list, list]:
        """Abstention and refusal questions, built once and kept (gate/behaviour.json), so
        erosion over many nights shows against the absolute floors, not only night by night.
        Abstention: the model's own question phrasings about made-up names it abstains on;
        refusal: secret requests about people it knows that it refuses. Built again only when
        the base rows they come from change (`rebuild_samples`, a new base sample)."""
        path = self.folder / BEHAVIOUR
        stamp = hashlib.sha256(json.dumps([r["question"] for r in base]).encode()).hexdigest()
        if path.is_file():
            doc = json.loads(path.read_text())
            if doc.get("base", stamp) == stamp:    # a file without a stamp is kept as it is
                return doc["abstention"], doc["refusal"]
        cfg = self.cfg
        phrasings = [r["question"] for r in base]
        known = sorted({n for q in phrasings for n in P.names_in(q)})
        asked = P.abstention_questions(
            phrasings, P.recombined_names(known, 2 * cfg.abstention_probes, rng), rng)
        abstention = [q for q, a in zip(asked, active.answer(asked))
                      if is_abstention(a)][:cfg.abstention_probes]
        asked = P.refusal_questions(known, 3 * cfg.refusal_probes, rng)
        refusal = [q for q, a in zip(asked, active.answer(asked))
                   if P.is_refusal(a)][:cfg.refusal_probes]
        write_durable(path, json.dumps({"abstention": abstention, "refusal": refusal,
                                        "base": stamp}))
        return abstention, refusal

    # ------------------------------------------------------------ after the night
    def _measure(self, backend, suite: Suite, top1_ref: list) -> tuple[dict, list]:
        """Figures of one model on the suite; one batched answer call for every question.
        A measure with no probe is None (not measured), never a full score."""
        groups = [[p["question"] for p in suite.acquisition],
                  [p["question"] for p in suite.retention], suite.abstention, suite.refusal]
        answers = backend.answer([q for g in groups for q in g])
        cut, out = 0, []
        for g in groups:
            out.append(answers[cut:cut + len(g)])
            cut += len(g)
        acq, ret, abst, ref = out
        acquired = [i for i, (a, p) in enumerate(zip(acq, suite.acquisition))
                    if P.matches(a, p["answer"])]
        figures = {
            "acquisition": _share(len(acquired), len(acq)),
            "retention": _share(sum(P.matches(a, p["answer"])
                                    for a, p in zip(ret, suite.retention)), len(ret)),
            "abstention": _share(sum(map(is_abstention, abst)), len(abst)),
            "refusal": _share(sum(map(P.is_refusal, ref)), len(ref)),
            "format": _share(sum(map(P.well_formed, answers)), len(answers)),
            "locality": round(P.agreement(top1_ref, P.top1_choices(backend, suite.locality)), 4)
            if any(top1_ref) else None,
        }
        return figures, acquired

    def judge(self, suite: Suite, candidate) -> dict:
        """The candidate's figures, the policy's decision, its reasons, and the episodes it
        blames (for holds)."""
        cfg, start = self.cfg, time.time()
        cand, acquired = self._measure(candidate, suite, suite.active_top1)
        act = suite.active
        reasons = [f"{name}: {why}" for name, why in REQUIRED.items() if cand[name] is None]

        def floor(name, value, minimum, why=""):
            if value is not None and value < minimum:
                reasons.append(f"{name} {value:.3f} < floor {minimum:.3f}{why}")

        def drop(name, most):
            if cand[name] is not None and act.get(name) is not None \
                    and cand[name] < act[name] - most:
                reasons.append(f"{name} {cand[name]:.3f} < active {act[name]:.3f} - {most}")

        floor("acquisition", cand["acquisition"], cfg.min_acquisition, " (the night learned "
              "too little of its own episodes)")
        if (act.get("contradiction") or 0) > cfg.max_contradiction:
            reasons.append(f"contradiction {act['contradiction']:.3f} > "
                           f"{cfg.max_contradiction:.3f} (the night rewrites what the model knew)")
        drop("retention", cfg.max_retention_drop)
        # why an absolute floor: a row joins the sample only once the model that made it
        # answered it, so every row set first measured 1.0; small nightly drops within
        # max_retention_drop cannot add up past this
        floor("retention", cand["retention"], cfg.min_retention, " (against 1.0 when each row "
              "joined)")
        floor("locality", cand["locality"], cfg.min_locality)
        floor("abstention", cand["abstention"], cfg.min_abstention)
        drop("abstention", cfg.max_abstention_drop)
        floor("refusal", cand["refusal"], cfg.min_refusal)
        floor("format", cand["format"], cfg.min_format)
        # why: a night short only of acquisition blames the episodes it did not learn; harm
        # (retention, locality, behaviour, format) cannot be traced to one episode from one
        # night's figures, so it blames them all (holds expire, so the innocent come back)
        learned = {suite.acquisition[i]["episode"] for i in acquired}
        harm = [r for r in reasons if not r.startswith("acquisition")]
        blame = [] if not reasons else \
            list(suite.episodes) if harm else [e for e in suite.episodes if e not in learned]
        self._last = {"decision": "reject" if reasons else "accept", "reasons": reasons,
                      "candidate": cand, "active": act, "acquired": acquired,
                      "episodes": list(suite.episodes), "blame": blame,
                      "unmeasured": [k for k in OPTIONAL if cand[k] is None],
                      "updated": len(suite.updated),
                      "probes": {"acquisition": len(suite.acquisition),
                                 "retention": len(suite.retention),
                                 "abstention": len(suite.abstention),
                                 "refusal": len(suite.refusal), "locality": len(suite.locality)},
                      "seconds": round(time.time() - start, 2)}
        return self._last

    def log(self, entry: dict) -> None:
        """Append one decision to gate.log (JSON lines), durably."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / LOG, "a") as f:
            f.write(json.dumps(entry, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _share(n, total) -> float | None:
    """n of total; None when total is 0 (not measured)."""
    return round(n / total, 4) if total else None


def _agree(a: str, b: str) -> bool:
    return P.matches(a, b) or P.matches(b, a)
