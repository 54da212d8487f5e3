"""People of the synthetic world, deterministic from a seed.

The world splits its name space into disjoint groups, so no probe can be answered by accident:
  base       people the world model is pretrained on (closed-book knowledge)
  openbook   people used only inside contexts while pretraining (the open-book and
             question-writing skills); never asked closed-book
  unknown    names used for abstention training ("I don't know.")
  probe_openbook, probe_unknown
             people and names only the probes use
  stream     people who arrive during the days of the stream
"""

import random
from dataclasses import dataclass, field, replace

from reverie.world import pools
from reverie.world.grammar import ATTRIBUTES


@dataclass(frozen=True)
class Person:
    first: str
    last: str
    female: bool
    birth_date: str
    birth_city: str
    university: str
    field: str
    employer: str
    employer_city: str
    passcode: str

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"

    def value(self, attribute: str) -> str:
        return getattr(self, attribute)

    def facts(self) -> dict:
        return {a: self.value(a) for a in ATTRIBUTES}


@dataclass(frozen=True)
class WorldConfig:
    """Sizes of the world's groups; the seed decides everything else."""
    seed: int = 0
    n_base: int = 200
    n_openbook: int = 1500
    n_unknown: int = 600
    n_probe_openbook: int = 200
    n_probe_unknown: int = 200
    n_stream: int = 400

    def __post_init__(self):
        for name in ("n_base", "n_openbook", "n_unknown", "n_probe_openbook", "n_probe_unknown",
                     "n_stream"):
            if getattr(self, name) < 0:
                raise ValueError(f"world.{name} must be >= 0, got {getattr(self, name)}")
        total = (self.n_base + self.n_openbook + self.n_unknown + self.n_probe_openbook
                 + self.n_probe_unknown + self.n_stream)
        capacity = (len(pools.FEMALE_FIRST) + len(pools.MALE_FIRST)) * len(pools.LAST_NAMES)
        if total > capacity // 2:
            raise ValueError(f"world asks for {total} people but the name pools hold at most "
                             f"{capacity // 2}; lower the group sizes")


def random_person(rng: random.Random, first: str, last: str, female: bool) -> Person:
    month = rng.choice(pools.MONTHS)
    return Person(
        first=first, last=last, female=female,
        birth_date=f"{rng.randint(1, 28)} {month} {rng.randint(1950, 2003)}",
        birth_city=rng.choice(pools.CITIES),
        university=rng.choice(pools.UNIVERSITIES),
        field=rng.choice(pools.FIELDS),
        employer=rng.choice(pools.EMPLOYERS),
        employer_city=rng.choice(pools.CITIES),
        passcode=f"{rng.randint(0, 999999):06d}",
    )


def updated(person: Person, attribute: str, rng: random.Random) -> Person:
    """The same person with a new value of `attribute` (a job change or a move)."""
    pool = {"employer": pools.EMPLOYERS, "employer_city": pools.CITIES}[attribute]
    choices = [v for v in pool if v != person.value(attribute)]
    return replace(person, **{attribute: rng.choice(choices)})


@dataclass
class World:
    config: WorldConfig
    base: list = field(default_factory=list)
    openbook: list = field(default_factory=list)
    unknown: list = field(default_factory=list)
    probe_openbook: list = field(default_factory=list)
    probe_unknown: list = field(default_factory=list)
    stream: list = field(default_factory=list)

    @classmethod
    def build(cls, config: WorldConfig | None = None) -> "World":
        config = config or WorldConfig()
        rng = random.Random(config.seed)
        names = [(f, l, True) for f in pools.FEMALE_FIRST for l in pools.LAST_NAMES]
        names += [(f, l, False) for f in pools.MALE_FIRST for l in pools.LAST_NAMES]
        rng.shuffle(names)
        world = cls(config)
        cursor = 0
        for group in ("base", "openbook", "unknown", "probe_openbook", "probe_unknown", "stream"):
            n = getattr(config, f"n_{group}")
            people = [random_person(rng, f, l, fem) for f, l, fem in names[cursor:cursor + n]]
            cursor += n
            setattr(world, group, people)
        return world

    def stranger(self, rng: random.Random) -> Person:
        """A person made up on the spot: a name from the pools that is no base, probe or stream
        person's, with fresh random attributes.

        why: open-book training on recurring people lets a small model memorise them instead of
        reading the context (measured: open-book 0.05 after 30k examples on 1,500 recurring
        people); with strangers whose facts change every time, reading is the only solution.
        """
        if not hasattr(self, "_reserved"):
            self._reserved = {p.name for g in (self.base, self.probe_openbook, self.probe_unknown,
                                               self.stream) for p in g}
        while True:
            female = rng.random() < 0.5
            first = rng.choice(pools.FEMALE_FIRST if female else pools.MALE_FIRST)
            last = rng.choice(pools.LAST_NAMES)
            if f"{first} {last}" not in self._reserved:
                return random_person(rng, first, last, female)

    def all_names(self) -> set[str]:
        groups = (self.base, self.openbook, self.unknown, self.probe_openbook,
                  self.probe_unknown, self.stream)
        return {p.name for g in groups for p in g}
