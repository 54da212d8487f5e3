"""Rendering people into text: biographies, updates, questions and answers."""

import random

from reverie.world import pools
from reverie.world.grammar import (ATTRIBUTES, STATEMENTS_HELD_OUT, STATEMENTS_TRAIN, UPDATES_TRAIN,
                                   question_phrasings)
from reverie.world.people import Person

_PHRASINGS: dict = {}
FRAMED_SHARE = 0.5  # TRAIN questions wrapped in the more framings (grammar.OPENERS_MORE)


def phrasings(attribute: str, split: str):
    key = (attribute, split)
    if key not in _PHRASINGS:
        _PHRASINGS[key] = question_phrasings(attribute, split)
    return _PHRASINGS[key]


def question(person_name: str, attribute: str, split: str, rng: random.Random,
             framed: bool = True) -> str:
    """A question in the split's phrasings. TRAIN draws the plain framings half the time: the
    framed ones outnumber them 40 to 1 and would otherwise crowd out plain questions.
    framed=False: plain framings only (questions the model learns to write itself)."""
    if split != "train":
        return rng.choice(phrasings(attribute, split)).render(person_name)
    key = (attribute, "train-parts")
    if key not in _PHRASINGS:
        every = phrasings(attribute, "train")
        _PHRASINGS[key] = ([p for p in every if p.kind == "train"],
                           [p for p in every if p.kind == "framed"])
    plain, more = _PHRASINGS[key]
    wrapped = framed and rng.random() < FRAMED_SHARE
    return rng.choice(more if wrapped else plain).render(person_name)


def _sentence(template: str, person: Person, value: str, use_name: bool) -> str:
    if use_name:
        subject, possessive = person.name, person.name + "'s"
    else:
        subject, possessive = ("She", "Her") if person.female else ("He", "His")
    return template.replace("{S}", subject).replace("{Q}", possessive).replace("{v}", value)


def biography(person: Person, rng: random.Random, split: str = "train",
              attributes=ATTRIBUTES, passcode: bool = False, pronouns: bool = True) -> str:
    """One rendering: one sentence per attribute, order permuted, the first naming the person.

    split 'train' uses TRAIN statement templates only; 'held_out' uses HELD-OUT ones where the
    attribute has one. pronouns=False names the person in every sentence (the dream's rewrite).
    """
    families = STATEMENTS_TRAIN if split == "train" else STATEMENTS_HELD_OUT
    attrs = list(attributes) + (["passcode"] if passcode else [])
    rng.shuffle(attrs)
    sentences = []
    for i, a in enumerate(attrs):
        use_name = i == 0 or not pronouns or rng.random() < 0.35
        sentences.append(_sentence(rng.choice(families[a]), person, person.value(a)
                                   if a != "passcode" else person.passcode, use_name))
    return " ".join(sentences)


def update_text(before: Person, after: Person, attribute: str, rng: random.Random) -> str:
    template = rng.choice(UPDATES_TRAIN[attribute])
    return (template.replace("{N}", after.name).replace("{old}", before.value(attribute))
            .replace("{v}", after.value(attribute)))


def chatter(rng: random.Random, n_sentences: int = 2) -> str:
    return " ".join(rng.sample(pools.CHATTER, n_sentences))


def statement(person: Person, attribute: str, rng: random.Random) -> str:
    """One TRAIN statement of one attribute, naming the person (its value is its last words)."""
    return _sentence(rng.choice(STATEMENTS_TRAIN[attribute]), person, person.value(attribute), True)


def restatement(person: Person, attribute: str, rng: random.Random) -> str:
    """A single TRAIN statement of one known fact: an episode that carries nothing new."""
    return _sentence(rng.choice(STATEMENTS_TRAIN[attribute]), person, person.value(attribute), True)
