"""The base corpus the world model is pretrained on.

An example is either a plain document (a biography: trained on every token) or a QA turn
(optional context, a question, an answer: trained on the answer only). Kinds and their share:
  bio            base people, several renderings, sentences permuted
  closed         closed-book QA on base people, TRAIN phrasings
  abstain        questions about never-seen names -> "I don't know."
  refuse         passcode requests -> "I can't share that." (the passcode may be in context)
  open           open-book QA: openbook people's biography among distractors in the context,
                 sometimes followed by an update (the newer statement wins) or missing the
                 asked attribute (-> "I don't know.")
  closed_noisy   closed-book QA on base people with an unrelated context (recall that missed)
  write          question writing: a text in the context, the model writes questions about it
                 with their answers (what the night's dream step asks of the model)
Only TRAIN templates are used; tests scan the corpus for HELD-OUT phrasings.
"""

import random

from reverie.models.batching import Example
from reverie.models.prompts import WRITE_INSTRUCTION, format_written_questions
from reverie.world import render
from reverie.world.grammar import ABSTAIN, ATTRIBUTES, REFUSE
from reverie.world.people import World, updated

MIX = {"bio": 0.15, "closed": 0.33, "abstain": 0.13, "refuse": 0.04, "open": 0.25,
       "closed_noisy": 0.03, "write": 0.07}


def _qa(kind, name, q, answer, context=None) -> Example:
    return Example(kind, context=context, question=q, answer=answer, asked=[(name, q)])


def _context(passages: list, rng: random.Random) -> str:
    rng.shuffle(passages)
    return "\n".join(passages)


def make_example(world: World, kind: str, rng: random.Random) -> Example:
    if kind == "bio":
        p = rng.choice(world.base)
        return Example(kind, text=render.biography(p, rng, passcode=rng.random() < 0.3))
    if kind == "closed":
        p, a = rng.choice(world.base), rng.choice(ATTRIBUTES)
        return _qa(kind, p.name, render.question(p.name, a, "train", rng), p.value(a))
    if kind == "abstain":
        p, a = rng.choice(world.unknown), rng.choice(ATTRIBUTES)
        return _qa(kind, p.name, render.question(p.name, a, "train", rng), ABSTAIN)
    if kind == "refuse":
        group = world.base if rng.random() < 0.6 else world.openbook
        p = rng.choice(group)
        ctx = render.biography(p, rng, passcode=True) if group is world.openbook else None
        return _qa(kind, p.name, render.question(p.name, "passcode", "train", rng), REFUSE, ctx)
    if kind == "closed_noisy":
        p, a = rng.choice(world.base), rng.choice(ATTRIBUTES)
        passages = [render.biography(o, rng) for o in rng.sample(world.openbook, rng.randint(1, 2))]
        if rng.random() < 0.5:
            passages.append(render.chatter(rng))
        return _qa(kind, p.name, render.question(p.name, a, "train", rng), p.value(a),
                   _context(passages, rng))
    if kind == "open":
        return _open_book(world, rng)
    if kind == "write":
        p = rng.choice(world.openbook)
        attrs = rng.sample(ATTRIBUTES, rng.randint(3, len(ATTRIBUTES)))
        text = render.biography(p, rng, attributes=attrs)
        pairs = [(render.question(p.name, a, "train", rng), p.value(a))
                 for a in rng.sample(attrs, len(attrs))]
        return Example(kind, context=text, question=WRITE_INSTRUCTION,
                       answer=format_written_questions(pairs), asked=[(p.name, q) for q, _ in pairs])
    raise ValueError(f"unknown example kind {kind!r}; expected one of {sorted(MIX)}")


def _open_book(world: World, rng: random.Random) -> Example:
    p = rng.choice(world.openbook)
    a = rng.choice(ATTRIBUTES)
    roll = rng.random()
    target_attrs = list(ATTRIBUTES)
    answer = p.value(a)
    extra = []
    if roll < 0.15 and a in ("employer", "employer_city"):
        after = updated(p, a, rng)
        extra.append(render.update_text(p, after, a, rng))  # why: the newer statement wins
        answer = after.value(a)
    elif roll < 0.25:
        target_attrs = [x for x in ATTRIBUTES if x != a]
        answer = ABSTAIN
    elif roll < 0.45:
        target_attrs = [a] + rng.sample([x for x in ATTRIBUTES if x != a], rng.randint(0, 3))
    bio = render.biography(p, rng, attributes=target_attrs)
    others = [o for o in rng.sample(world.openbook, 3) if o.name != p.name]
    passages = [render.biography(o, rng) for o in others[:rng.randint(0, 2)]]
    if rng.random() < 0.3:
        passages.append(render.chatter(rng, rng.randint(1, 3)))
    passages = [bio] + passages
    rng.shuffle(passages)
    context = "\n".join(passages + extra)  # updates come last: they are the newest episodes
    return _qa("open", p.name, render.question(p.name, a, "train", rng), answer, context)


def base_corpus(world: World, n_examples: int, seed: int) -> list[Example]:
    """A deterministic list of n_examples drawn by MIX."""
    rng = random.Random(seed)
    kinds, weights = zip(*MIX.items())
    return [make_example(world, rng.choices(kinds, weights)[0], rng) for _ in range(n_examples)]
