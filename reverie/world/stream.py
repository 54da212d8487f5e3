"""The stream of days: what arrives after pretraining, as documents and chat turns would.

Each day brings events:
  new_person   one biography of a stream person (TRAIN statements, one rendering)
  update       a job change or a move of someone already met (base or stream person)
  noise        chatter with no facts
  repeat       a near-copy of an earlier event of the stream (re-rendered or verbatim)
  restatement  one fact the model already knows (a base person), restated
  feedback     marks an earlier event important (no text of its own)
The stream keeps the truth: `Stream.facts` maps name -> current facts after every update, and
`Stream.superseded` records the old values that updates replaced.
"""

import random
from dataclasses import dataclass, field

from reverie.config import field as cfield
from reverie.config import positive
from reverie.world import render
from reverie.world.grammar import ATTRIBUTES
from reverie.world.people import Person, World, updated


@dataclass
class StreamConfig:
    days: int = cfield(5, "days in the stream")
    new_per_day: int = cfield(8, "new people arriving each day")
    updates_per_day: int = cfield(2, "job changes or moves each day")
    noise_per_day: int = cfield(4, "chatter episodes each day")
    repeats_per_day: int = cfield(2, "repeats of earlier episodes each day")
    restatements_per_day: int = cfield(2, "restatements of known base facts each day")
    feedback_per_day: int = cfield(1, "earlier episodes marked important each day")
    seed: int = cfield(0, "seed of the stream (the world has its own)")

    def __post_init__(self):
        positive(self, "days")
        for name in ("new_per_day", "updates_per_day", "noise_per_day", "repeats_per_day",
                     "restatements_per_day", "feedback_per_day"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class Event:
    day: int
    kind: str
    text: str = ""
    name: str | None = None
    attribute: str | None = None      # update / restatement: which attribute
    value: str | None = None          # update: the new value
    ref: int | None = None            # repeat / feedback: index of the event it refers to
    important: bool = False


@dataclass
class Stream:
    days: list = field(default_factory=list)          # list[list[Event]]
    facts: dict = field(default_factory=dict)         # name -> {attribute: current value}
    arrived: dict = field(default_factory=dict)       # name -> day the person arrived
    superseded: dict = field(default_factory=dict)    # (name, attribute) -> old value
    updated_on: dict = field(default_factory=dict)    # (name, attribute) -> day

    @property
    def events(self) -> list[Event]:
        return [e for day in self.days for e in day]

    def people_of_day(self, day: int) -> list[str]:
        return [n for n, d in self.arrived.items() if d == day]


def build_stream(world: World, cfg: StreamConfig) -> Stream:
    """Deterministic from (world, cfg). Draws new people from world.stream in order."""
    rng = random.Random(cfg.seed * 7919 + world.config.seed)
    needed = cfg.days * cfg.new_per_day
    if needed > len(world.stream):
        raise ValueError(f"stream needs {needed} new people but world.n_stream is "
                         f"{len(world.stream)}; raise world.n_stream or lower new_per_day")
    people: dict[str, Person] = {}
    stream = Stream()
    cursor, flat = 0, []
    for day in range(cfg.days):
        events = []
        for p in world.stream[cursor:cursor + cfg.new_per_day]:
            people[p.name] = p
            stream.arrived[p.name] = day
            events.append(Event(day, "new_person", render.biography(p, rng), p.name))
        cursor += cfg.new_per_day
        movable = list(people.values()) + world.base
        for _ in range(cfg.updates_per_day):
            before = rng.choice(movable)
            before = people.get(before.name, before)
            attribute = rng.choice(("employer", "employer_city"))
            after = updated(before, attribute, rng)
            people[after.name] = after
            stream.superseded[(after.name, attribute)] = before.value(attribute)
            stream.updated_on[(after.name, attribute)] = day
            events.append(Event(day, "update", render.update_text(before, after, attribute, rng),
                                after.name, attribute, after.value(attribute)))
        for _ in range(cfg.noise_per_day):
            events.append(Event(day, "noise", render.chatter(rng, rng.randint(1, 3))))
        for _ in range(cfg.restatements_per_day):
            p, a = rng.choice(world.base), rng.choice(ATTRIBUTES)
            p = people.get(p.name, p)
            events.append(Event(day, "restatement", render.restatement(p, a, rng), p.name, a,
                                p.value(a)))
        earlier = [i for i, e in enumerate(flat) if e.kind in ("new_person", "update")]
        for _ in range(cfg.repeats_per_day if earlier else 0):
            i = rng.choice(earlier)
            src = flat[i]
            text = src.text if rng.random() < 0.5 or src.kind != "new_person" else \
                render.biography(people[src.name], rng)
            events.append(Event(day, "repeat", text, src.name, src.attribute, src.value, ref=i))
        made = [e for e in events if e.kind == "update"]
        rng.shuffle(events)
        # why: a person can move twice in a day; `people` (the truth) holds the last move made,
        # so updates keep the order they were made in, or the text read last would be stale
        for k, e in zip([k for k, e in enumerate(events) if e.kind == "update"], made):
            events[k] = e
        base_index = len(flat)
        flat.extend(events)
        candidates = [base_index + i for i, e in enumerate(events) if e.kind == "new_person"]
        for i in rng.sample(candidates, min(cfg.feedback_per_day, len(candidates))):
            flat[i].important = True
            fb = Event(day, "feedback", "", flat[i].name, ref=i, important=True)
            events.append(fb)
            flat.append(fb)
        stream.days.append(events)
    stream.facts = {n: p.facts() for n, p in people.items()}
    return stream
