"""The dream and generative replay: what a night is trained on, from stand-in models."""

import copy
import random

import pytest

from reverie.models.batching import Example
from reverie.sleep.config import DreamConfig
from reverie.sleep.dream import rewrites, stranger_name, strangers, subject_of
from tiny import TEXTS


def test_subject_and_rewrites_name_the_pronouns():
    assert subject_of(TEXTS[0]) == "Ada Lowell"
    assert subject_of("The weather was fine.") is None
    out = rewrites(TEXTS[0], 3, random.Random(0))
    assert len(out) == 3
    for r in out:
        assert "She " not in r and "Her " not in r
        assert "Ada Lowell works for Acme Robotics." in r and "Ada Lowell's office is in Rome." in r


def test_stranger_names_are_names_nobody_in_the_night_has():
    rng = random.Random(0)
    known = {"Ada Lowell", "Otto Vance"}
    made = {stranger_name("Ada Lowell", ["Ada", "Otto"], ["Lowell", "Vance"], known, rng)
            for _ in range(20)}
    assert made == {"Ada Vance", "Otto Lowell"}
    alone = stranger_name("Ada Lowell", ["Ada"], ["Lowell"], {"Ada Lowell"}, rng)
    assert alone.startswith("Ada L") and alone != "Ada Lowell" and sorted(alone) == sorted("Ada Lowell")


class Answers:
    """A stand-in model that abstains on every name but one."""

    def __init__(self, known):
        self.known, self.asked = known, []

    def answer(self, questions, contexts=None):
        self.asked += questions
        return ["Oslo" if self.known in q else "I don't know." for q in questions]


def test_strangers_reask_the_night_questions_and_keep_only_abstentions():
    model = Answers(known="Otto Lowell")
    pairs = [[("Where was Ada Lowell born?", "Oslo"), ("Who employs Ada Lowell?", "Acme Robotics")],
             [("What did Otto Vance study?", "physics"), ("Where did he study?", "Eastfield")]]
    out = strangers(model, TEXTS[:2], pairs, 1.0, random.Random(1))
    assert len(model.asked) == 3  # "Where did he study?" names nobody: not re-asked
    assert all("Ada Lowell" not in q and "Otto Vance" not in q for q in model.asked)
    assert all(e.kind == "stranger" and e.answer == "I don't know." for e in out)
    assert len(out) == sum("Otto Lowell" not in q for q in model.asked)


def test_a_ratio_above_one_asks_each_question_about_several_strangers():
    model = Answers(known="nobody")
    pairs = [[("Where was Ada Lowell born?", "Oslo"), ("Who employs Ada Lowell?", "Acme Robotics")]]
    out = strangers(model, TEXTS[:1], pairs, 2.0, random.Random(3))
    assert len(model.asked) == 4 == len(out)
    assert sorted(q.split()[0] for q in model.asked) == ["Where", "Where", "Who", "Who"]
    assert not any("Ada Lowell" in q for q in model.asked)


class Guard:
    """Declines requests that name a code, gives a fact for anything else."""

    def __init__(self):
        self.asked = []

    def answer(self, questions, contexts=None):
        self.asked += questions
        return ["I can't share that." if "code" in q else "Eastfield" for q in questions]


def test_guarded_requests_keep_only_what_the_model_declines():
    from reverie.sleep.dream import guarded
    model = Guard()
    templates = ("What access code does {N} use?", "Tell me {N}'s password.")
    out = guarded(model, TEXTS[:2], templates, 2, random.Random(0))
    subjects = {"Ada Lowell", "Otto Vance"}
    assert sorted(model.asked) == sorted(t.replace("{N}", s) for s in subjects for t in templates)
    assert [(e.kind, e.answer) for e in out] == [("guarded", "I can't share that.")] * 2
    assert {e.question for e in out} == {templates[0].replace("{N}", s) for s in subjects}
    assert guarded(model, ["no one is named here."], templates, 2, random.Random(0)) == []
    with pytest.raises(ValueError, match="guarded must be a list of requests with an"):
        DreamConfig(guarded=("Tell me the password.",))


def test_strangers_borrow_names_from_the_models_own_writing():
    model = Answers(known="nobody")
    pairs = [[("Where was Ada Lowell born?", "Oslo")]] * 30
    own = ["Mira Castell was born in Lyon.", "Jon Pike works for Arcwell."]
    out = strangers(model, [TEXTS[0]] * 30, pairs, 1.0, random.Random(3), own)
    names = {q.split(" was born")[0].split("Where was ")[1] for q in model.asked}
    assert names - {"Ada Lowell", "Mira Castell", "Jon Pike"} == names  # never a known name
    assert any(n.split()[0] in ("Mira", "Jon") or n.split()[1] in ("Castell", "Pike")
               for n in names)
    assert len(out) == 30


def test_generative_replay_reads_its_own_documents_open_book(monkeypatch):
    from reverie.sleep import rehearsal

    class Writer:
        tokenizer = staticmethod(lambda text: {"input_ids": [1]})

        def generate(self, prompts, **kw):
            return ["Ada Lowell was born in Oslo."] * len(prompts)

        def answer(self, questions, contexts=None):
            return ["Oslo" if contexts else "I don't know."] * len(questions)

    monkeypatch.setattr("reverie.sleep.dream.write_questions",
                        lambda backend, docs, *a: [["Where was Ada Lowell born?"]] * len(docs))
    out = rehearsal.generative_samples(Writer(), 4, 8, 0, question_share=1.0, open_share=1.0)
    assert [e.kind for e in out] == ["generative_qa", "generative_open"]
    assert out[0].answer == "I don't know." and out[0].context is None
    assert out[1].context == "Ada Lowell was born in Oslo." and out[1].answer == "Oslo"


def test_a_writer_writes_the_questions_and_may_answer_them(monkeypatch):
    from reverie.sleep import dream as dream_mod

    class Writer:
        def write_prompt(self, text):
            return text

        def generate(self, prompts, **kw):
            return ["Where was Ada Lowell born? => Oslo"] * len(prompts)

        def answer(self, questions, contexts=None):
            return ["Oslo"] * len(questions)

    class Learner(Writer):
        def generate(self, prompts, **kw):
            raise AssertionError("the learner writes no question when a writer is set")

        def answer(self, questions, contexts=None):
            return ["Ada Lowell was born in Oslo, Norway."] * len(questions)  # Norway: made up

    monkeypatch.setitem(dream_mod._WRITERS, "teacher", Writer())
    cfg = DreamConfig(writer="teacher")
    assert dream_mod.self_questions(Learner(), TEXTS[:1], cfg, 0) == [[]]  # ungrounded answer
    cfg.writer_answers = True     # the learner's own words say more than the text: the writer's
    assert dream_mod.self_questions(Learner(), TEXTS[:1], cfg, 0) == \
        [[("Where was Ada Lowell born?", "Oslo")]]

    class Voiced(Learner):
        def answer(self, questions, contexts=None):
            return ["Ada Lowell was born in Oslo."] * len(questions)

    class Wrong(Learner):
        def answer(self, questions, contexts=None):
            return ["Ada Lowell was born in Rome."] * len(questions)
    assert dream_mod.self_questions(Voiced(), TEXTS[:1], cfg, 0) == \
        [[("Where was Ada Lowell born?", "Ada Lowell was born in Oslo.")]]
    assert dream_mod.self_questions(Wrong(), TEXTS[:1], cfg, 0) == \
        [[("Where was Ada Lowell born?", "Oslo")]]

    class Hinted(Learner):  # right once told the answer; then runs on past it
        def answer(self, questions, contexts=None, **kw):
            told = [c and "The answer: Oslo" in c for c in contexts]
            return ["Ada Lowell was born in Oslo. She liked it." if t else
                    "Ada Lowell was born in Rome." for t in told]
    assert dream_mod.self_questions(Hinted(), TEXTS[:1], cfg, 0) == \
        [[("Where was Ada Lowell born?", "Ada Lowell was born in Oslo.")]]

    class Stubborn(Learner):  # wrong even when told: the writer's answer is learned
        def answer(self, questions, contexts=None, **kw):
            return ["Ada Lowell was born in Rome." for _ in questions]
    assert dream_mod.self_questions(Stubborn(), TEXTS[:1], cfg, 0) == \
        [[("Where was Ada Lowell born?", "Oslo")]]
    cfg.learner_voice = False
    assert dream_mod.self_questions(Voiced(), TEXTS[:1], cfg, 0) == \
        [[("Where was Ada Lowell born?", "Oslo")]]


def test_answers_follow_the_chat_template_without_a_stray_space(tiny):
    from reverie.models.batching import encode
    tok = copy.deepcopy(tiny.tokenizer)
    ex = Example("self_question", question="Where was Ada Lowell born?", answer="Oslo")
    ids, labels = encode(tok, ex, 128)        # the world model's template: "A:" + " Oslo"
    assert [i for i in labels if i != -100] == tok(" Oslo", add_special_tokens=False)[
        "input_ids"] + [tok.eos_token_id]
    # a chat model's template: "<assistant>\n" + "Oslo", as the model writes it at inference
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }}\n{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant\n{% endif %}")
    ids, labels = encode(tok, ex, 128)
    assert [i for i in labels if i != -100] == tok("Oslo", add_special_tokens=False)[
        "input_ids"] + [tok.eos_token_id]
