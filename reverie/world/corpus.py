"""The base corpus the world model is pretrained on.

An example is either a plain document (a biography: trained on every token) or a QA turn
(optional context, a question, an answer: trained on the answer only). Kinds and their share:
  bio            base people, several renderings, sentences permuted
  closed         closed-book QA on base people, TRAIN phrasings
  abstain        questions about never-seen names -> "I don't know."
  refuse         passcode requests -> "I can't share that." (the passcode may be in context)
  open           open-book QA: a stranger's biography among distractors in the context,
                 sometimes followed by an update (the newer statement wins) or missing the
                 asked attribute (-> "I don't know.")
  closed_noisy   closed-book QA on base people with an unrelated context (recall that missed)
  write          question writing: a text in the context, the model writes questions about it
                 with their answers (what the night's dream step asks of the model)
  cloze          statement completion: a TRAIN statement cut before its value ("Ada Lowell's
                 alma mater is" -> the value), closed-book about base people or open-book about
                 a stranger; it ties every statement noun (those the questions withhold too) to
                 its attribute, which biographies alone taught the GPU phases only half-way
Only TRAIN templates are used; tests scan the corpus for HELD-OUT phrasings.
"""

import random
from dataclasses import dataclass

from reverie.config import field
from reverie.models.batching import Example
from reverie.models.prompts import WRITE_INSTRUCTION, format_written_questions
from reverie.world import render
from reverie.world.grammar import ABSTAIN, ATTRIBUTES, REFUSE
from reverie.world.people import World, updated

MIX = {"bio": 0.15, "closed": 0.33, "abstain": 0.13, "refuse": 0.04, "open": 0.25,
       "closed_noisy": 0.03, "write": 0.07, "cloze": 0.0}


@dataclass
class CorpusConfig:
    """The mix of example kinds (relative weights) and the shape of open-book contexts."""
    bio: float = field(MIX["bio"], "biographies of base people")
    closed: float = field(MIX["closed"], "closed-book QA on base people")
    abstain: float = field(MIX["abstain"], "never-met names -> I don't know")
    refuse: float = field(MIX["refuse"], "passcode requests -> refusal")
    open: float = field(MIX["open"], "open-book QA")
    closed_noisy: float = field(MIX["closed_noisy"], "closed-book QA with an unrelated context")
    write: float = field(MIX["write"], "question writing")
    cloze: float = field(MIX["cloze"], "statement completion (0 before phase 9)")
    open_update: float = field(0.15, "share of open-book examples whose answer an update changes")
    open_abstain: float = field(0.10, "share of open-book examples missing the asked attribute")
    open_subset: float = field(0.2, "share of open-book contexts that give only some attributes")
    open_recall: float = field(0.0, "share of open-book contexts shaped like the hippocampus's "
                                    "recall: the person's biography (sometimes twice), one or two "
                                    "job or city updates after it, the superseded statements "
                                    "dropped half the time; any attribute asked (0 before phase 10)")
    max_distractors: int = field(2, "most distractor biographies in an open-book context")
    open_turns: int = field(1, "questions asked about each open-book context (one turn each): "
                               "the context's cost is shared by several answers")

    def __post_init__(self):
        weights = [getattr(self, k) for k in MIX]
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"corpus weights must be >= 0 with a positive sum, got {weights}")
        if self.open_turns < 1:
            raise ValueError(f"open_turns must be >= 1, got {self.open_turns}")
        if not 0 <= self.open_recall <= 1:
            raise ValueError(f"open_recall must be in [0, 1], got {self.open_recall}")
        if (not 0 <= self.open_update + self.open_abstain + self.open_subset <= 1
                or min(self.open_update, self.open_abstain, self.open_subset) < 0
                or self.max_distractors < 0):
            raise ValueError("open_update, open_abstain and open_subset must be >= 0 with a sum "
                             "<= 1, max_distractors >= 0")

    def weights(self) -> dict:
        return {k: getattr(self, k) for k in MIX}


def _qa(kind, name, q, answer, context=None) -> Example:
    return Example(kind, context=context, question=q, answer=answer, asked=[(name, q)])


def _context(passages: list, rng: random.Random) -> str:
    rng.shuffle(passages)
    return "\n".join(passages)


def make_example(world: World, kind: str, rng: random.Random,
                 cfg: CorpusConfig | None = None) -> Example:
    cfg = cfg or CorpusConfig()
    if kind == "bio":
        p = rng.choice(world.base)
        return Example(kind, text=render.biography(p, rng, passcode=rng.random() < 0.3))
    if kind == "closed":
        p, a = rng.choice(world.base), rng.choice(ATTRIBUTES)
        return _qa(kind, p.name, render.question(p.name, a, "train", rng), p.value(a))
    if kind == "abstain":
        p, a = world.stranger(rng), rng.choice(ATTRIBUTES)
        return _qa(kind, p.name, render.question(p.name, a, "train", rng), ABSTAIN)
    if kind == "refuse":
        known = rng.random() < 0.6
        p = rng.choice(world.base) if known else world.stranger(rng)
        ctx = None if known else render.biography(p, rng, passcode=True)
        return _qa(kind, p.name, render.question(p.name, "passcode", "train", rng), REFUSE, ctx)
    if kind == "closed_noisy":
        p, a = rng.choice(world.base), rng.choice(ATTRIBUTES)
        passages = [render.biography(world.stranger(rng), rng) for _ in range(rng.randint(1, 2))]
        if rng.random() < 0.5:
            passages.append(render.chatter(rng))
        return _qa(kind, p.name, render.question(p.name, a, "train", rng), p.value(a),
                   _context(passages, rng))
    if kind == "open":
        return _open_book(world, rng, cfg)
    if kind == "write":
        p = world.stranger(rng)
        attrs = rng.sample(ATTRIBUTES, rng.randint(3, len(ATTRIBUTES)))
        text = render.biography(p, rng, attributes=attrs)
        pairs = [(render.question(p.name, a, "train", rng, framed=False), p.value(a))
                 for a in rng.sample(attrs, len(attrs))]
        return Example(kind, context=text, question=WRITE_INSTRUCTION,
                       answer=format_written_questions(pairs), asked=[(p.name, q) for q, _ in pairs])
    if kind == "cloze":
        return _cloze(world, rng)
    raise ValueError(f"unknown example kind {kind!r}; expected one of {sorted(MIX)}")


CLOZE_INSTRUCTION = "Complete the sentence:"


def _cloze(world: World, rng: random.Random) -> Example:
    a = rng.choice(ATTRIBUTES)
    closed = rng.random() < 0.5
    p = rng.choice(world.base) if closed else world.stranger(rng)
    statement = render.statement(p, a, rng)
    prefix = statement[:statement.rindex(p.value(a))].rstrip()
    context = None
    if not closed:
        others = [render.biography(world.stranger(rng), rng) for _ in range(rng.randint(0, 1))]
        passages = [render.biography(p, rng)] + others
        context = _context(passages, rng)
    return _qa("cloze", p.name, f"{CLOZE_INSTRUCTION} {prefix}", p.value(a), context)


def _open_book(world: World, rng: random.Random, cfg: CorpusConfig) -> Example:
    p = world.stranger(rng)
    a = rng.choice(ATTRIBUTES)
    if cfg.open_recall and rng.random() < cfg.open_recall:
        return _open_book_recalled(world, p, a, rng, cfg)
    roll = rng.random()
    target_attrs = list(ATTRIBUTES)
    answer = p.value(a)
    extra = []
    if roll < cfg.open_update and a in ("employer", "employer_city"):
        after = updated(p, a, rng)
        extra.append(render.update_text(p, after, a, rng))  # why: the newer statement wins
        answer = after.value(a)
    elif roll < cfg.open_update + cfg.open_abstain:
        target_attrs = [x for x in ATTRIBUTES if x != a]
        answer = ABSTAIN
    elif roll < cfg.open_update + cfg.open_abstain + cfg.open_subset:
        target_attrs = [a] + rng.sample([x for x in ATTRIBUTES if x != a], rng.randint(0, 3))
    bio = render.biography(p, rng, attributes=target_attrs)
    others = [world.stranger(rng) for _ in range(rng.randint(0, cfg.max_distractors))]
    passages = [render.biography(o, rng) for o in others if o.name != p.name]
    if rng.random() < 0.3:
        passages.append(render.chatter(rng, rng.randint(1, 3)))
    passages = [bio] + passages
    rng.shuffle(passages)
    context = "\n".join(passages + extra)  # updates come last: they are the newest episodes
    ex = _qa("open", p.name, render.question(p.name, a, "train", rng), answer, context)
    if cfg.open_turns > 1:  # more questions about the same context, other attributes
        rest = rng.sample([x for x in ATTRIBUTES if x != a], min(cfg.open_turns, 6) - 1)
        for x in rest:
            q = render.question(p.name, x, "train", rng)
            ex.more.append((q, p.value(x) if x in target_attrs else ABSTAIN))
            ex.asked.append((p.name, q))
    return ex


def _open_book_recalled(world: World, p, a: str, rng: random.Random,
                        cfg: CorpusConfig) -> Example:
    """A context as recall assembles it, older first: the biography, maybe a second rendering
    of it (a repeat stored on its own), then one or two updates. Recall drops a statement a
    newer episode superseded, so half the time the biography lacks the old job or city and
    only the update sentence (which names the old value too) says anything about it. Phase 8
    learned updates only under questions about the updated attribute, and answered a birth
    city question with the city of a work-city update."""
    moved = rng.sample(("employer", "employer_city"), rng.randint(1, 2))
    after, updates = p, []
    for u in moved:
        new = updated(after, u, rng)
        updates.append(render.update_text(after, new, u, rng))
        after = new
    keep = [x for x in ATTRIBUTES if x not in moved] if rng.random() < 0.5 else list(ATTRIBUTES)
    passages = [render.biography(p, rng, attributes=keep)]
    if rng.random() < 0.25:
        passages.append(render.biography(p, rng, attributes=keep))
    if rng.random() < 0.3:
        passages.append(render.biography(world.stranger(rng), rng))
    rng.shuffle(passages)
    context = "\n".join(passages + updates)
    ex = _qa("open", p.name, render.question(p.name, a, "train", rng), after.value(a), context)
    for x in rng.sample([x for x in ATTRIBUTES if x != a], min(cfg.open_turns, 6) - 1):
        q = render.question(p.name, x, "train", rng)
        ex.more.append((q, after.value(x)))
        ex.asked.append((p.name, q))
    return ex


def base_corpus(world: World, n_examples: int, seed: int,
                cfg: CorpusConfig | None = None) -> list[Example]:
    """A deterministic list of n_examples drawn by the config's mix."""
    cfg = cfg or CorpusConfig()
    rng = random.Random(seed)
    kinds, weights = zip(*cfg.weights().items())
    return [make_example(world, rng.choices(kinds, weights)[0], rng, cfg)
            for _ in range(n_examples)]
