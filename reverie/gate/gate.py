"""The gate: a night's candidate serves only if it passes probes against the active model.

Before the night (`prepare`, on the active model): the night's acquisition questions, the
retention sample, the behaviour questions, the locality reference, and the active model's own
figures on all of them. After the night (`judge`, on the candidate): the same probes, then the
policy (GateConfig): absolute floors and maximum drops. Every decision is appended to
data_dir/gate.log (JSON lines: figures, reasons, episode ids; no episode text). Accepted nights'
questions that the candidate answers join the retention sample (data_dir/gate/retention.jsonl),
tagged with their episode and snapshot so a rollback or a deletion can drop them.
"""

import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from reverie.gate import probes as P
from reverie.gate.config import GateConfig
from reverie.models.prompts import is_abstention

LOG = "gate.log"
RETENTION = "retention.jsonl"
BEHAVIOUR = "behaviour.json"
REFUSED = "refused.json"


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


class Gate:
    def __init__(self, data_dir, cfg: GateConfig | None = None):
        self.data_dir = Path(data_dir)
        self.cfg = cfg or GateConfig()
        self.folder = self.data_dir / "gate"
        self._cache: dict = {}   # (active id, retention size) -> (figures, top1, questions)

    # ------------------------------------------------------------ retention sample on disk
    def retention(self, lineage_ids: set) -> list[dict]:
        """The retention sample valid for the active lineage (base questions and those of
        nights still in it)."""
        path = self.folder / RETENTION
        if not path.is_file():
            return []
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [r for r in rows if r["snapshot"] is None or r["snapshot"] in lineage_ids]

    def _write_retention(self, rows: list[dict]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{RETENTION}.tmp"
        with open(tmp, "w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.folder / RETENTION)

    def retention_questions(self) -> list[dict]:
        """Every retention probe kept, whatever snapshot it came from: rows with question,
        answer, episode (None for a base-model probe) and snapshot."""
        path = self.folder / RETENTION
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] \
            if path.is_file() else []

    def forget_episodes(self, ids) -> int:
        """Drop every probe derived from these episodes (deletion); returns how many."""
        ids = {int(i) for i in ids}
        rows = self.retention_questions()
        kept = [r for r in rows if r["episode"] is None or int(r["episode"]) not in ids]
        if len(kept) != len(rows):
            self._write_retention(kept)
        return len(rows) - len(kept)

    # ------------------------------------------------------------ refused episodes
    def held(self) -> set:
        """Episodes in `hold_after` refused nights: they wait outside the night's selection
        (still recalled), so one bad episode cannot block every later night."""
        counts = self._refusals()
        return {int(i) for i, n in counts.items() if n >= self.cfg.hold_after}

    def _refusals(self) -> dict:
        path = self.folder / REFUSED
        return json.loads(path.read_text()) if path.is_file() else {}

    def refused(self, ids) -> None:
        counts = self._refusals()
        for i in ids:
            counts[str(int(i))] = counts.get(str(int(i)), 0) + 1
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{REFUSED}.tmp"
        tmp.write_text(json.dumps(counts))
        os.replace(tmp, self.folder / REFUSED)

    def remember(self, suite: Suite, report: dict, snapshot: str) -> int:
        """After a commit: the acquisition questions the candidate answered join the sample."""
        right = set(report.get("acquired", []))
        new = [dict(p, snapshot=snapshot) for i, p in enumerate(suite.acquisition) if i in right]
        if new:
            self._write_retention(self.retention_questions() + new)
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
        base = [r for r in rows if r["snapshot"] is None][:cfg.retention_base]
        nightly = [r for r in rows if r["snapshot"] is not None]
        retention = base + nightly[max(0, len(nightly) - (cfg.retention_max - len(base))):]
        pairs = P.write_questions(active, [t for _, t in episodes], cfg.questions_per_episode)
        acquisition = [{"question": q, "answer": a, "episode": eid}
                       for (eid, _), ps in zip(episodes, pairs) for q, a in ps]
        abstention, refusal = self._behaviour(active, base, rng)
        key = (active_key, len(retention), tuple(r["question"] for r in retention[-3:]))
        if key not in self._cache:
            locality = P.locality_reference(active, cfg.locality_prompts, cfg.seed)
            top1 = P.top1_choices(active, locality)
            suite = Suite([], retention, abstention, refusal, locality, {}, top1)
            self._cache = {key: (self._measure(active, suite, top1)[0], suite)}
        figures, cached = self._cache[key]
        suite = Suite(acquisition, retention, cached.abstention, cached.refusal, cached.locality,
                      dict(figures), cached.active_top1)
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

    def _behaviour(self, active, base: list, rng: random.Random) -> tuple[list, list]:
        """Abstention and refusal questions, built once and kept (gate/behaviour.json), so
        erosion over many nights shows against the absolute floors, not only night by night.
        Abstention: the model's own question phrasings about made-up names it abstains on;
        refusal: secret requests about people it knows that it refuses."""
        path = self.folder / BEHAVIOUR
        if path.is_file():
            doc = json.loads(path.read_text())
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
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{BEHAVIOUR}.tmp"
        tmp.write_text(json.dumps({"abstention": abstention, "refusal": refusal}))
        os.replace(tmp, path)
        return abstention, refusal

    # ------------------------------------------------------------ after the night
    def _measure(self, backend, suite: Suite, top1_ref: list) -> tuple[dict, list]:
        """Figures of one model on the suite; one batched answer call for every question."""
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
            "locality": round(P.agreement(top1_ref, P.top1_choices(backend, suite.locality)), 4),
        }
        return figures, acquired

    def judge(self, suite: Suite, candidate) -> dict:
        """The candidate's figures, the policy's decision and its reasons."""
        cfg, start = self.cfg, time.time()
        cand, acquired = self._measure(candidate, suite, suite.active_top1)
        act = suite.active
        reasons = []

        def floor(name, value, minimum):
            if value < minimum:
                reasons.append(f"{name} {value:.3f} < floor {minimum:.3f}")

        floor("acquisition", cand["acquisition"], cfg.min_acquisition)
        if act["contradiction"] > cfg.max_contradiction:
            reasons.append(f"contradiction {act['contradiction']:.3f} > "
                           f"{cfg.max_contradiction:.3f} (the night rewrites what the model knew)")
        if cand["retention"] < act["retention"] - cfg.max_retention_drop:
            reasons.append(f"retention {cand['retention']:.3f} < active "
                           f"{act['retention']:.3f} - {cfg.max_retention_drop}")
        floor("locality", cand["locality"], cfg.min_locality)
        floor("abstention", cand["abstention"], cfg.min_abstention)
        if cand["abstention"] < act["abstention"] - cfg.max_abstention_drop:
            reasons.append(f"abstention {cand['abstention']:.3f} < active "
                           f"{act['abstention']:.3f} - {cfg.max_abstention_drop}")
        floor("refusal", cand["refusal"], cfg.min_refusal)
        floor("format", cand["format"], cfg.min_format)
        return {"decision": "reject" if reasons else "accept", "reasons": reasons,
                "candidate": cand, "active": act, "acquired": acquired,
                "probes": {"acquisition": len(suite.acquisition),
                           "retention": len(suite.retention),
                           "abstention": len(suite.abstention), "refusal": len(suite.refusal),
                           "locality": len(suite.locality)},
                "seconds": round(time.time() - start, 2)}

    def log(self, entry: dict) -> None:
        """Append one decision to gate.log (JSON lines), durably."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / LOG, "a") as f:
            f.write(json.dumps(entry, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _share(n, total) -> float:
    return round(n / total, 4) if total else 1.0
