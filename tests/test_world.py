"""The synthetic world: determinism, grammar sizes, and the HELD-OUT scan."""

import re

import pytest

from reverie.world import grammar
from reverie.models.prompts import parse_written_questions
from reverie.config import load as load_preset
from reverie.world.corpus import MIX, base_corpus
from reverie.world.pretrain import PretrainConfig
from reverie.world.people import World, WorldConfig
from reverie.world.render import phrasings
from reverie.world.stream import StreamConfig, build_stream

SLOTS = re.compile(r"\{[NPSQv]\}|\{old\}")


def test_world_is_deterministic_and_groups_are_disjoint():
    a, b = World.build(WorldConfig(seed=3)), World.build(WorldConfig(seed=3))
    assert a.base == b.base and a.stream == b.stream
    assert World.build(WorldConfig(seed=4)).base != a.base
    groups = [a.base, a.openbook, a.unknown, a.probe_openbook, a.probe_unknown, a.stream]
    names = [p.name for g in groups for p in g]
    assert len(names) == len(set(names)) == sum(map(len, groups))


def test_corpus_is_deterministic_and_follows_the_mix(world):
    one, two = base_corpus(world, 3000, seed=1), base_corpus(world, 3000, seed=1)
    assert [e.rendered() for e in one] == [e.rendered() for e in two]
    assert [e.rendered() for e in base_corpus(world, 50, seed=2)] != [e.rendered() for e in one[:50]]
    for kind, share in MIX.items():
        seen = sum(e.kind == kind for e in one) / len(one)
        assert abs(seen - share) < 0.03, (kind, seen, share)


@pytest.mark.parametrize("attribute", grammar.ATTRIBUTES + ("passcode",))
def test_grammar_gives_hundreds_of_train_phrasings_and_disjoint_held_out(attribute):
    train = {p.skeleton for p in phrasings(attribute, "train")}
    held = {p.skeleton for p in phrasings(attribute, "held_out")}
    assert len(train) >= 1000
    assert len(held) >= 150
    assert not train & held
    kinds = {p.kind for p in phrasings(attribute, "held_out")}
    assert kinds == {"combination", "withheld_word", "new_sentence"}


def _held_out_fragments():
    """The longest literal piece of every wholly new HELD-OUT sentence and statement."""
    templates = [t for ts in grammar.NEW_SENTENCES_HELD_OUT.values() for t in ts]
    templates += [t for ts in grammar.STATEMENTS_HELD_OUT.values() for t in ts]
    fragments = []
    for t in templates:
        piece = max((s.strip(" .?") for s in SLOTS.split(t)), key=len)
        assert len(piece) >= 8, t
        fragments.append(piece)
    return fragments


def test_no_held_out_phrasing_appears_in_any_training_text(world):
    """Scans the whole default pretraining corpus (150k examples), the GPU phases' mix with
    statement completion (cloze), and a stream."""
    held = {p.skeleton for a in grammar.ATTRIBUTES + ("passcode",) for p in phrasings(a, "held_out")}
    fragments = _held_out_fragments()
    gpu = load_preset(PretrainConfig, "world-gpu3").corpus
    assert gpu.cloze > 0 and gpu.open_recall > 0
    corpus = base_corpus(world, 150_000, seed=0) + base_corpus(world, 30_000, seed=1, cfg=gpu)
    assert sum(e.kind == "cloze" for e in corpus) > 1000
    stream = build_stream(world, StreamConfig(days=10))
    texts = [e.rendered() for e in corpus] + [e.text for e in stream.events]
    asked = [(n, q) for e in corpus for n, q in e.asked]
    assert len(asked) > 100_000
    for name, q in asked:
        assert q.replace(name, "{N}") not in held, q
    blob = "\n".join(texts)
    for f in fragments:
        assert f not in blob, f
    # the scan can fail: a held-out phrasing rendered into text is caught
    leaked = phrasings("employer", "held_out")[0].render(world.base[0].name)
    assert leaked.replace(world.base[0].name, "{N}") in held


def test_question_writing_round_trips(world):
    ex = next(e for e in base_corpus(world, 500, seed=5) if e.kind == "write")
    pairs = parse_written_questions(ex.answer)
    assert len(pairs) >= 3 and all(a in ex.context for _, a in pairs)


@pytest.mark.parametrize("updates_per_day", [3, 40])
def test_stream_keeps_the_truth(world, updates_per_day):
    # 40 a day: people move twice in one day, and the text read last must be the truth
    cfg = StreamConfig(days=4, new_per_day=5, updates_per_day=updates_per_day)
    s, again = build_stream(world, cfg), build_stream(world, cfg)
    assert [e.text for e in s.events] == [e.text for e in again.events]
    kinds = [e.kind for e in s.days[2]]
    assert kinds.count("new_person") == 5 and kinds.count("update") == updates_per_day
    assert len(s.arrived) == 20
    for (name, attribute), old in s.superseded.items():
        assert s.facts[name][attribute] != old
    updates = [e for e in s.events if e.kind == "update"]
    last = {}
    for e in updates:
        last[(e.name, e.attribute)] = e.value
    for (name, attribute), value in last.items():
        assert s.facts[name][attribute] == value
    with pytest.raises(ValueError, match="n_stream"):
        build_stream(world, StreamConfig(days=100, new_per_day=50))
