"""Sleep on a tiny model: each strategy's hook does what it should; a night is deterministic."""

import copy
import random

import pytest
import torch

from reverie.models.backend import Backend
from reverie.models.world_model import build_model, train_tokenizer
from reverie.sleep.config import DreamConfig, RehearsalConfig, SleepConfig, TrainConfig
from reverie.models.batching import Example
from reverie.sleep.dream import rewrites, stranger_name, strangers, subject_of
from lifecycle_night import run_night  # the lifecycle selects, then the night
from reverie.sleep.rehearsal import update_reservoir
from reverie.sleep.strategies import STRATEGIES
from reverie.sleep.strategies.base import Night, SleepState
from reverie.sleep.strategies.distill import kl_per_token
from reverie.sleep.strategies.ewc import EWC, diagonal_fisher, ewc_penalty
from reverie.sleep.strategies.lora import LoRA

TEXTS = ["Ada Lowell was born in Oslo. She works for Acme Robotics. Her office is in Rome.",
         "Otto Vance studied at Eastfield University. He majored in physics.",
         "The coffee machine is broken again."]


class Ep:
    def __init__(self, i, text, priority=1.0, private=False):
        self.id, self.text, self.priority, self.private = i, text, priority, private


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    tok = train_tokenizer(TEXTS * 20 + ["Q: A: Context: => ?"], 300)
    model = build_model(tok, hidden=64, layers=2, intermediate=128, max_positions=512, seed=0)
    return Backend(model, tok)


def tiny_cfg(strategy, **kw):
    return SleepConfig(strategy=strategy, dream=DreamConfig(question_samples=1, max_new_tokens=16),
                       rehearsal=RehearsalConfig(generative_samples=4, generative_max_tokens=12),
                       train=TrainConfig(epochs=1, batch_tokens=512, bf16=False), **kw)


def night_of(backend, cfg):
    return Night(cfg, SleepState(), backend.tokenizer, backend.model,
                 [Example("generative", text="Ada Lowell works.")] * 4,
                 random.Random(0), lr=cfg.train.lr)


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


def test_ewc_penalty_is_zero_at_the_anchor_and_grows_away(tiny):
    model = copy.deepcopy(tiny.model)
    night = night_of(tiny, tiny_cfg("ewc"))
    EWC().wrap(night, model)
    fisher, anchor = night.state.fisher, night.state.anchor
    assert float(ewc_penalty(model, fisher, anchor)) == 0.0
    penalties = []
    for scale in (1e-3, 1e-2, 1e-1):
        moved = copy.deepcopy(model)
        with torch.no_grad():
            for p in moved.parameters():
                p.add_(scale)
        penalties.append(float(ewc_penalty(moved, fisher, anchor)))
    assert 0 < penalties[0] < penalties[1] < penalties[2]
    assert penalties[2] / penalties[1] == pytest.approx(100, rel=1e-3)  # quadratic


def test_fisher_is_normalised_and_positive(tiny):
    from reverie.models.batching import Example
    f = diagonal_fisher(copy.deepcopy(tiny.model), tiny.tokenizer,
                        [Example("d", text=t) for t in TEXTS], 64)
    flat = torch.cat([v.flatten() for v in f.values()])
    assert flat.mean().item() == pytest.approx(1.0, rel=1e-4) and flat.min() >= 0


def test_distill_kl_is_zero_against_itself_and_positive_otherwise(tiny):
    enc = tiny.tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = tiny.model(**enc).logits
        other = logits + torch.randn_like(logits)
    assert float(kl_per_token(logits, logits, enc["attention_mask"])) == pytest.approx(0, abs=1e-6)
    assert float(kl_per_token(logits, other, enc["attention_mask"])) > 0.1


def test_merged_lora_gives_the_unmerged_logits(tiny):
    cfg = tiny_cfg("lora")
    night = night_of(tiny, cfg)
    model = LoRA().wrap(night, copy.deepcopy(tiny.model))
    with torch.no_grad():  # move the adapters off their zero init so the merge matters
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    enc = tiny.tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        unmerged = model(**enc).logits
        base = tiny.model(**enc).logits
        merged = LoRA().finish(night, model)(**enc).logits
    assert not torch.allclose(unmerged, base, atol=1e-3)
    assert torch.allclose(unmerged, merged, atol=1e-4)


@pytest.mark.parametrize("strategy", sorted(set(STRATEGIES) - {"edit", "nullspace", "grow"}))  # below
def test_every_strategy_runs_a_night_and_lowers_the_loss_on_its_episodes(tiny, strategy):
    cfg = tiny_cfg(strategy, budget_episodes=2, scope_lr=3e-3, scope_epochs=6)
    cfg.train.epochs = 6
    cfg.train.lr = 3e-3
    cfg.lora_lr = 1e-2
    episodes = [Ep(i, t, priority=p) for i, (t, p) in enumerate(zip(TEXTS, (0.9, 0.8, 0.1)))]
    before = [x.mean().item() for x in tiny.token_nll(TEXTS[:2])]
    result = run_night(tiny, episodes, cfg, SleepState())
    assert result.episodes == [0, 1]  # the two highest priorities within the budget
    after = [x.mean().item() for x in result.candidate.token_nll(TEXTS[:2])]
    assert all(a < b - 0.2 for a, b in zip(after, before)), (strategy, before, after)
    assert result.report["train_tokens"] > 0
    # the serving model is untouched
    assert [x.mean().item() for x in tiny.token_nll(TEXTS[:2])] == before


def test_a_night_is_deterministic_under_a_seed(tiny):
    episodes = [Ep(i, t) for i, t in enumerate(TEXTS)]
    a = run_night(tiny, episodes, tiny_cfg("cls"), SleepState())
    b = run_night(tiny, episodes, tiny_cfg("cls"), SleepState())
    for (n, p), (_, q) in zip(a.candidate.model.named_parameters(),
                              b.candidate.model.named_parameters()):
        assert torch.equal(p, q), n
    assert a.report["final_loss"] == b.report["final_loss"]


def test_private_episodes_are_never_selected(tiny):
    episodes = [Ep(0, TEXTS[0], private=True), Ep(1, TEXTS[1])]
    result = run_night(tiny, episodes, tiny_cfg("naive"), SleepState())
    assert result.episodes == [1]


def test_reservoir_stays_bounded_and_keeps_old_items():
    reservoir, seen, rng = [], 0, random.Random(0)
    for night in range(10):
        seen = update_reservoir(reservoir, seen, [(night, i) for i in range(50)], 100, rng)
    assert len(reservoir) == 100 and seen == 500
    assert len({n for n, _ in reservoir}) >= 8  # old nights survive


def test_unknown_strategy_is_a_clear_error():
    with pytest.raises(ValueError, match="strategy must be one of"):
        SleepConfig(strategy="magic")


def test_trainable_limits_the_night_to_matching_parameters(tiny):
    cfg = tiny_cfg("naive")
    cfg.train.trainable = r"mlp\."
    cfg.train.lr = 3e-3
    result = run_night(tiny, [Ep(0, TEXTS[0])], cfg, SleepState())
    changed = {n for (n, p), (_, q) in zip(result.candidate.model.named_parameters(),
                                           tiny.model.named_parameters())
               if not torch.equal(p, q)}
    assert changed and all(".mlp." in n for n in changed), changed
    # frozen for the night only: the candidate trains whole in the next one
    assert all(p.requires_grad for p in result.candidate.model.parameters())


def test_trainable_errors_name_the_setting():
    with pytest.raises(ValueError, match="trainable is not a regular expression"):
        TrainConfig(trainable="mlp(")
    from reverie.sleep.train import trainable_parameters
    with pytest.raises(ValueError, match="matches no trainable parameter"):
        trainable_parameters(torch.nn.Linear(2, 2), "nothing-like-this")


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


def test_behaviour_set_keeps_every_nights_strangers_and_survives_a_snapshot(tiny, tmp_path):
    from reverie.lifecycle.state import load_state, save_state
    cfg = tiny_cfg("cls")
    state = SleepState()
    state.behaviour = [Example("stranger", question="Where was Ida Moss born?",
                               answer="I don't know.")]
    state.behaviour_seen = 1
    night = night_of(tiny, cfg)
    night.state = state
    from reverie.sleep.strategies.replay import Replay
    mixed = Replay().extend(night, [Example("episode", text=TEXTS[0])])
    assert state.behaviour[0] in mixed
    save_state(tmp_path, state)
    back = load_state(tmp_path)
    assert back.behaviour == state.behaviour and back.behaviour_seen == 1


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


def test_generative_replay_keeps_the_models_replies_to_its_own_first_sentences():
    from reverie.sleep import rehearsal

    class Writer:
        tokenizer = staticmethod(lambda text: {"input_ids": [1]})

        def generate(self, prompts, **kw):
            return ["The lift was out of order. It came back at noon.\nMore text.",
                    "Hi.", "The lift was out of order. Again."][:len(prompts)]

        def answer(self, questions, contexts=None):
            return [f"Sorry to hear: {q}" for q in questions]

    out = rehearsal.generative_samples(Writer(), 3, 8, 0, question_share=0.0, chat_share=1.0)
    chat = [e for e in out if e.kind == "generative_chat"]
    # one reply per distinct first sentence of three words or more
    assert [(e.question, e.answer) for e in chat] == [
        ("The lift was out of order.", "Sorry to hear: The lift was out of order.")]
    assert [e.kind for e in out].count("generative") == 3
    with pytest.raises(ValueError, match="generative_chat"):
        RehearsalConfig(generative_questions=0.75, generative_chat=0.5)


def test_cls_trains_adapters_on_large_models_only():
    from reverie.sleep.strategies import build_parts
    names = lambda parts: [p.name for p in parts]  # noqa: E731
    assert names(build_parts("cls", "auto", 135_000_000)) == ["lora", "focus", "replay", "distill"]
    assert names(build_parts("cls", "auto", 6_000_000, "auto")) == ["focus", "replay", "distill"]
    assert names(build_parts("cls", "auto", 135_000_000, "auto")) == ["focus", "scope"]
    assert names(build_parts("cls", "no", 6_000_000, "yes")) == ["focus", "scope"]
    assert names(build_parts("naive", "no", 135_000_000, "yes")) == []
    with pytest.raises(ValueError, match="scope must be auto, yes or no"):
        SleepConfig(scope="maybe")
    with pytest.raises(ValueError, match="scope_layer must be in"):
        SleepConfig(scope_layer=1.5)
    assert names(build_parts("cls", "yes", 6_000_000))[0] == "lora"
    assert names(build_parts("naive", "yes", 135_000_000)) == []
    with pytest.raises(ValueError, match="cls_lora must be auto, yes or no"):
        SleepConfig(cls_lora="maybe")


def test_cls_changes_only_the_mlp_blocks(tiny):
    cfg = tiny_cfg("cls")
    cfg.train.lr = 3e-3
    result = run_night(tiny, [Ep(0, TEXTS[0])], cfg, SleepState())
    pairs = zip(result.candidate.model.named_parameters(), tiny.model.named_parameters())
    changed = {n for (n, p), (_, q) in pairs if not torch.equal(p, q)}
    assert changed and all(".mlp." in n for n in changed), changed
    assert all(p.requires_grad for p in result.candidate.model.parameters())


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

    class Lucky(Learner):  # right only when sampled
        def answer(self, questions, contexts=None, **kw):
            return ["Ada Lowell was born in " + ("Oslo." if kw.get("sample") else "Rome.")
                    for _ in questions]
    assert dream_mod.self_questions(Lucky(), TEXTS[:1], cfg, 0) == \
        [[("Where was Ada Lowell born?", "Oslo")]]
    cfg.voice_samples = 2
    assert dream_mod.self_questions(Lucky(), TEXTS[:1], cfg, 0) == \
        [[("Where was Ada Lowell born?", "Ada Lowell was born in Oslo.")]]
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


def test_episodes_below_the_priority_floor_are_not_consolidated(tiny):
    episodes = [Ep(0, TEXTS[0], priority=0.6), Ep(1, TEXTS[2], priority=0.05)]
    assert run_night(tiny, episodes, tiny_cfg("naive"), SleepState()).episodes == [0]
    low = run_night(tiny, episodes[1:], tiny_cfg("naive"), SleepState())
    assert low.episodes == [] and "skipped" in low.report
    assert run_night(tiny, episodes, tiny_cfg("naive", min_priority=0.0), SleepState()).episodes == [0, 1]


def test_replay_leaves_out_old_material_about_tonights_subjects(tiny):
    from reverie.sleep.strategies.replay import Replay
    night = night_of(tiny, tiny_cfg("cls"))
    stale = Example("self_question", question="Who employs Ada Lowell?", answer="Old Firm")
    other = Example("self_question", question="Where was Otto Vance born?", answer="Oslo")
    night.state.reservoir = [stale, other]
    tonight = [Example("episode", text="Ada Lowell took a new job at New Firm.")]
    mixed = Replay().extend(night, tonight + [Example("rewrite", text="x")] * 3)
    assert other in mixed and stale not in mixed


def test_the_pre_sleep_models_words_about_tonights_subjects_are_not_replayed(tiny, monkeypatch):
    from reverie.sleep import night as night_mod
    stale = Example("generative_qa", question="Who employs Ada Lowell?", answer="Old Firm")
    other = Example("generative_qa", question="Where was Otto Vance born?", answer="Oslo")
    monkeypatch.setattr(night_mod, "generative_samples", lambda *a, **k: [stale, other])
    seen = {}

    def fit(model, mix, parts, night, progress=None):
        seen["mix"], seen["generative"] = list(mix), list(night.generative)
        return {}
    monkeypatch.setattr(night_mod, "train", fit)
    run_night(tiny, [Ep(0, TEXTS[0])], tiny_cfg("cls"), SleepState())
    assert seen["generative"] == [other]      # distilled (KL) and replayed: Otto only
    assert other in seen["mix"] and stale not in seen["mix"]


class Writer:
    """A stand-in model that finishes any sentence with "Lima." and answers from what it reads:
    the context's last word, or "Paris" closed-book."""

    def __init__(self):
        self.cuts, self.asked = [], []

    def generate(self, prompts, **kw):
        self.cuts += prompts
        return ["Lima. And then more."] * len(prompts)

    def answer(self, questions, contexts=None):
        contexts = contexts or [None] * len(questions)
        self.asked += list(zip(questions, contexts))
        return [c.split()[-1].rstrip(".") if c else "Paris" for c in contexts]


def test_counterparts_reask_about_a_made_up_person_closed_and_open_book():
    from reverie.sleep.dream import counterparts, retold
    model = Writer()
    told = retold(model, [TEXTS[0]], ["Ada Lowell"], ["Otto Lowell"], seed=0)
    # every sentence cut after its first half, finished by the model, the name swapped
    assert model.cuts == ["Otto Lowell was", "She works for", "Her office is"]
    assert told == ["Otto Lowell was Lima. She works for Lima. Her office is Lima."]
    model = Writer()
    pairs = [[("Where was Ada Lowell born?", "Oslo"), ("Who employs Ada Lowell?", "Acme")],
             [("What did Otto Vance study?", "physics")]]
    out = counterparts(model, TEXTS[:2], pairs, 1, random.Random(0))
    asked = [q for q, _ in model.asked]
    assert len(out) == 4 and len(asked) == 4  # one question per episode, closed and open-book
    assert not any(n in q for q in asked for n in ("Ada Lowell", "Otto Vance"))
    # the made-up names are the night's first and last names recombined
    assert all("Ada Vance" in q or "Otto Lowell" in q for q in asked)
    assert [e.kind for e in out] == ["counterpart"] * 2 + ["counterpart_open"] * 2
    assert [e.answer for e in out] == ["Paris", "Paris", "Lima", "Lima"]
    assert all("Lima" in e.context and e.context.split()[0] in ("Ada", "Otto")
               for e in out[2:])


def test_an_edit_writes_the_facts_and_leaves_other_text_nearly_alone(tiny):
    from reverie.sleep.edit import edit, subject_position
    tok = tiny.tokenizer
    prompt = tiny.prompt("Where was Ada Lowell born?")
    pos = subject_position(tok, prompt, "Ada Lowell")
    assert tok.decode(tok(prompt)["input_ids"][pos]).strip() in "Lowell"
    assert subject_position(tok, prompt, "Otto Vance") is None
    backend = Backend(copy.deepcopy(tiny.model), tok)
    facts = {"Ada Lowell": [("Where was Ada Lowell born?", "Rome"),
                            ("Which city was Ada Lowell born in?", "Rome")]}
    generic = TEXTS[1:] * 4 + ["Otto Vance works for Acme Robotics in Oslo."] * 4
    asked = tiny.prompt("Where was Ada Lowell born?") + " Rome"
    other = "Otto Vance studied at Eastfield University. He majored in physics."
    before = [tiny.token_nll([t])[0] for t in (asked, other)]
    # the vector goes in after layer 0: the last layer's attention carries it to the answer
    report = edit(backend, facts, generic, [0], steps=30, lr=0.5, max_ratio=4.0, weight=10.0)
    after = [backend.token_nll([t])[0] for t in (asked, other)]
    assert report["edited"] == 1 and report["prompts"] == 2
    # the weights now produce the subject's vector (a random model barely routes it to the
    # answer, so only the direction of the answer's loss is asserted), and the generic text,
    # which never names Ada Lowell, barely moved
    assert report["residual_miss"] < 0.02
    assert report["delta_loss"]["Ada Lowell"] < before[0][-2:].mean()
    assert after[0][-2:].mean() < before[0][-2:].mean()
    assert (after[1] - before[1]).abs().max() < 0.05 < (after[0] - before[0]).abs().max()
    # the edited layer's down-projection is all that changed
    changed = {n for (n, p), q in zip(backend.model.named_parameters(), tiny.model.parameters())
               if not torch.equal(p, q)}
    assert changed == {"model.layers.0.mlp.down_proj.weight"}


def test_the_edit_strategy_writes_the_nights_self_questions_and_trains_nothing(tiny):
    from reverie.sleep.strategies.edit import Edit, layer_range
    assert layer_range("3-8") == [3, 4, 5, 6, 7, 8] and layer_range("2") == [2]
    with pytest.raises(ValueError, match="edit_layers must be 'first-last'"):
        SleepConfig(edit_layers="3..8")
    cfg = tiny_cfg("edit", edit_layers="0", edit_steps=5)
    night = night_of(tiny, cfg)
    night.scratch["material"] = [
        Example("episode", text=TEXTS[0]),
        Example("self_question", question="Where was Ada Lowell born?", answer="Oslo"),
        Example("self_question", question="Who employs Otto Vance?", answer="Acme")]
    model = Edit().wrap(night, copy.deepcopy(tiny.model))
    assert night.scratch["edit"]["edited"] == 1 and night.scratch["edit"]["prompts"] == 1
    assert Edit().extend(night, night.scratch["material"]) == []
    changed = {n for (n, p), q in zip(model.named_parameters(), tiny.model.parameters())
               if not torch.equal(p, q)}
    assert changed == {"model.layers.0.mlp.down_proj.weight"}


def test_counterparts_go_to_the_kl_and_replay_not_to_the_new_material(tiny, monkeypatch):
    from reverie.sleep import night as night_mod
    made = [Example("episode", text=TEXTS[0]),
            Example("counterpart", question="Where was Ada Vance born?", answer="Paris"),
            Example("counterpart_open", context="Ada Vance was born in Lima.",
                    question="Where was Ada Vance born?", answer="Lima")]
    monkeypatch.setattr(night_mod, "dream", lambda *a, **kw: list(made))
    cfg = tiny_cfg("cls", budget_episodes=1)
    cfg.rehearsal.generative_samples = 0
    result = run_night(tiny, [Ep(0, TEXTS[0])], cfg, SleepState())
    assert result.report["material"] == {"episode": 1}
    assert result.report["generative_samples"] == 2


def test_nullspace_steps_leave_the_protected_directions_alone(tiny):
    from reverie.sleep.strategies.nullspace import projector
    episodes = [Ep(i, t) for i, t in enumerate(TEXTS[:2])]
    before = [x.mean().item() for x in tiny.token_nll(TEXTS[:2])]
    downs = lambda m: {n: p for n, p in m.named_parameters() if n.endswith("down_proj.weight")}
    # nothing protected: plain training of the down-projections; the rest stays as it was
    cfg = tiny_cfg("nullspace", null_share=0.0, null_lr=2e-2)
    cfg.train.epochs = 6
    result = run_night(tiny, episodes, cfg, SleepState())
    after = [x.mean().item() for x in result.candidate.token_nll(TEXTS[:2])]
    assert all(a < b - 0.2 for a, b in zip(after, before)), (before, after)
    changed = {n for (n, p), q in zip(result.candidate.model.named_parameters(),
                                      tiny.model.parameters()) if not torch.equal(p, q)}
    assert changed == set(downs(tiny.model))
    assert all(p.requires_grad for p in result.candidate.model.parameters())
    # 48 of 128 directions protected: the change is orthogonal to the top 48 keys of the text
    # the night protected (the pre-sleep model's own writing, as the night sampled it)
    cfg = tiny_cfg("nullspace", null_share=0.375, null_lr=2e-2)
    cfg.train.epochs = 6
    seen = {}
    from reverie.sleep.strategies import nullspace as ns
    real = ns.key_covariances
    ns.key_covariances = lambda *a, **kw: seen.setdefault("covs", real(*a, **kw))
    try:
        result = run_night(tiny, episodes, cfg, SleepState())
    finally:
        ns.key_covariances = real
    for i, (n, p) in enumerate(sorted(downs(result.candidate.model).items())):
        layer = int(n.split(".layers.")[1].split(".")[0])
        top = torch.linalg.eigh(seen["covs"][layer])[1][:, -48:].float()
        dW = p - downs(tiny.model)[n]
        assert dW.abs().max() > 1e-4
        assert (dW @ top).abs().max() < 1e-4 * dW.abs().max() * 100
    assert torch.allclose(projector(torch.eye(4, dtype=torch.double) * 2, 4), torch.zeros(4, 4))
    with pytest.raises(ValueError, match="null_share must be in"):
        SleepConfig(null_share=1.5)


def test_grown_neurons_start_silent_fold_into_a_standard_folder_and_keep_the_old_weights(
        tiny, tmp_path):
    from transformers import AutoModelForCausalLM

    from reverie.sleep.strategies.grow import GrownMLP, fold, grow
    model = copy.deepcopy(tiny.model)
    ids = tiny.tokenizer(TEXTS[:2], return_tensors="pt", padding=True)["input_ids"]
    before = model(ids).logits
    grown = grow(model, 6, "1")
    assert [type(b.mlp) is GrownMLP for b in model.model.layers] == [False, True]
    assert torch.allclose(model(ids).logits, before, atol=1e-6)  # down = 0: silent
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        "model.layers.1.mlp.gate", "model.layers.1.mlp.up", "model.layers.1.mlp.down"}
    with torch.no_grad():
        grown[0].down.normal_(0, 0.5)
    spoken = model(ids).logits
    assert (spoken - before).abs().max() > 1e-2
    size = model.config.intermediate_size
    assert fold(model) == 6 and model.config.intermediate_size == size + 6
    assert torch.allclose(model(ids).logits, spoken, atol=1e-5)
    # the layer that grew nothing got six zero neurons; the old ones are as they were
    assert model.model.layers[0].mlp.gate_proj.weight[size:].abs().sum() == 0
    assert torch.equal(model.model.layers[1].mlp.up_proj.weight[:size],
                       tiny.model.model.layers[1].mlp.up_proj.weight)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert torch.allclose(loaded(ids).logits, spoken, atol=1e-5)
    fixed = copy.deepcopy(tiny.model)
    grow(fixed, 2, "0", init={0: (torch.ones(2, 64), torch.ones(2, 64))}, fixed=True)
    assert {n for n, p in fixed.named_parameters() if p.requires_grad} == {"model.layers.0.mlp.down"}
    assert torch.equal(fixed.model.layers[0].mlp.gate.detach(), torch.ones(2, 64))
    with pytest.raises(ValueError, match="grow_layers must be"):
        SleepConfig(grow_layers="top")
    with pytest.raises(ValueError, match="outside the model's layers"):
        grow(copy.deepcopy(tiny.model), 2, "1-5")


def test_the_grow_night_learns_in_new_neurons_and_quiet_keeps_them_off_its_own_writing(tiny):
    from reverie.sleep.strategies.grow import Grow, mentions
    from reverie.sleep.train import train
    material = [Example("episode", text=TEXTS[0]),
                Example("self_question", question="Where was Ada Lowell born?", answer="Oslo")]
    own = TEXTS[2]
    moved, learned = {}, {}
    for weight in (0.0, 30.0):
        cfg = tiny_cfg("grow", grow_quiet=weight, grow_lr=1e-2, kl_weight=0.0, grow_neurons=3)
        cfg.train.epochs = 16
        night = night_of(tiny, cfg)
        night.generative = [Example("generative", text=own)] * 4
        night.scratch["material"] = material  # the keys are chosen from it
        part = Grow()
        model = part.wrap(night, copy.deepcopy(tiny.model))
        # one subject: a key on the mean of its two mentions, then one on each (3 asked for)
        renamed = night.scratch["grow_renamed"]
        assert len(renamed) == 2 and not any("Ada Lowell" in (ex.text or ex.question)
                                             for ex in renamed)
        train(model, material, [part], night)
        model = part.finish(night, model)
        assert night.scratch["grow"] == {"neurons_per_layer": 3, "intermediate_size": 131}
        assert all(p.requires_grad for p in model.parameters())
        now = Backend(model, tiny.tokenizer)
        learned[weight] = now.token_nll(TEXTS[:1])[0].mean().item() - \
            tiny.token_nll(TEXTS[:1])[0].mean().item()
        ids = tiny.tokenizer([own], return_tensors="pt")["input_ids"]
        moved[weight] = kl_per_token(tiny.model(ids).logits, model(ids).logits,
                                     torch.ones_like(ids)).item()
    assert learned[0.0] < -0.1, learned
    assert learned[30.0] < 0, learned
    # taught silence on the model's own writing: what it says there barely moves
    assert moved[30.0] < 0.01 * moved[0.0], moved
    text = "Ada Lowell met Ada Lowell."
    spans = tiny.tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    assert all(text[:spans[i][1]].endswith("Lowell") for i in mentions(tiny.tokenizer, text,
                                                                        "Ada Lowell"))
    assert len(mentions(tiny.tokenizer, text, "Ada Lowell")) == 2


def test_keys_fire_on_the_most_novel_inputs_and_not_on_the_old_ones():
    from reverie.sleep.strategies.grow import keys
    g = torch.Generator().manual_seed(0)
    common = torch.randn(16, generator=g) * 3
    old = common + torch.randn(200, 16, generator=g) * 0.3
    new = torch.cat([common + torch.randn(50, 16, generator=g) * 0.3,   # like the old
                     torch.randn(3, 16, generator=g) * 3])             # novel
    gates, ups, n = keys(new, old, 3, on=4.0)
    assert n == 3
    picked = (gates @ new.T).argmax(1)
    assert sorted(picked.tolist()) == [50, 51, 52]
    assert torch.allclose((gates * new[picked]).sum(1), torch.full((3,), 4.0), atol=1e-4)
    assert torch.allclose((ups * new[picked]).sum(1), torch.ones(3), atol=1e-4)
    assert (gates @ old.T).max() < 0


def scope_night(tiny, texts=TEXTS[:1], state=None, backend=None, epochs=6, lr=3e-3):
    cfg = tiny_cfg("scope", scope_lr=lr, scope_epochs=epochs)
    cfg.rehearsal.generative_samples = 24  # the own writing the trigger is fitted against
    return run_night(backend or tiny, [Ep(i, t) for i, t in enumerate(texts)], cfg,
                     state or SleepState())


def test_the_scope_learns_about_tonights_subject_and_leaves_other_text_exactly(tiny):
    from reverie.models.scope import scope_of
    result = scope_night(tiny)
    report = result.report["scope"]
    assert report["subjects"] == ["Ada Lowell"] and report["mentions"] > 0
    assert report["mentions_low"] > report["threshold"] > report["own_best"]
    assert report["separable"] is True
    now = result.candidate
    before = tiny.token_nll([TEXTS[0]])[0].mean().item()
    assert now.token_nll([TEXTS[0]])[0].mean().item() < before - 0.2
    tok = tiny.tokenizer
    for other in (TEXTS[1], TEXTS[2], "Otto Vance was born in Rome. The coffee is fine."):
        ids = tok([other], return_tensors="pt")["input_ids"]
        assert torch.allclose(now.model(ids).logits, tiny.model(ids).logits, atol=1e-5), other
    # the weights did change, inside the scope's layers only; the serving model has no scope
    changed = {n for (n, p), (_, q) in zip(now.model.named_parameters(),
                                           tiny.model.named_parameters()) if not torch.equal(p, q)}
    assert changed and all(n.startswith("model.layers.1.mlp.") for n in changed), changed
    assert scope_of(tiny.model) is None and len(scope_of(now.model).entries) == 1


def test_the_scope_is_saved_beside_a_standard_folder_and_read_back(tiny, tmp_path):
    from transformers import AutoModelForCausalLM
    now = scope_night(tiny).candidate
    now.save(tmp_path)
    assert (tmp_path / "scope.json").is_file() and (tmp_path / "scope.safetensors").is_file()
    loaded = Backend.load(str(tmp_path))
    tok = tiny.tokenizer
    for text in (TEXTS[0], TEXTS[2]):
        ids = tok([text], return_tensors="pt")["input_ids"]
        assert torch.allclose(loaded.model(ids).logits, now.model(ids).logits, atol=1e-5)
    # plain transformers reads the weights as trained, everywhere (no scope)
    plain = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = tok([TEXTS[2]], return_tensors="pt")["input_ids"]
    assert not torch.allclose(plain(ids).logits, tiny.model(ids).logits, atol=1e-4)
    (tmp_path / "scope.safetensors").unlink()
    with pytest.raises(Exception, match="scope.safetensors is missing"):
        Backend.load(str(tmp_path))


def test_the_scope_holds_while_decoding_with_the_cache(tiny):
    now = scope_night(tiny, epochs=12, lr=1e-2).candidate
    tok = now.tokenizer
    for prompt in ("Ada Lowell works for", "The coffee machine"):
        ids = tok([prompt], return_tensors="pt")["input_ids"]
        out = now.model.generate(ids, max_new_tokens=8, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        full = now.model(out).logits[0, ids.shape[1] - 1:-1].argmax(-1)
        assert torch.equal(full, out[0, ids.shape[1]:]), prompt
    # a batch with left padding decodes each row as it would alone
    now.tokenizer.padding_side = "left"
    prompts = ["Ada Lowell works for", "The coffee machine", "Who is Ada Lowell? She"]
    both = now.generate(prompts, max_new_tokens=6)
    assert both == [now.generate([p], max_new_tokens=6)[0] for p in prompts]
    # and the service's own decoder (left-padded batch, its cache) writes the same
    from reverie.serve.engine import Sequence, decode
    from reverie.serve.tenants import Serving
    serving = Serving.of(now, None)
    seqs = [Sequence(prompt_ids=serving.encoder(p)["input_ids"], max_tokens=6, index=i,
                     sink=lambda *e: None) for i, p in enumerate(prompts)]
    decode(serving, seqs)
    assert [s.sent for s in seqs] == both
    # what it writes after Ada's name is tonight's; after the coffee machine, as before
    before = tiny.generate(prompts, max_new_tokens=6)
    assert both[0] != before[0] and both[2] != before[2] and both[1] == before[1]


def test_nights_under_the_scope_stack_and_each_keeps_its_own(tiny):
    from reverie.models.scope import scope_of
    state = SleepState()
    first = scope_night(tiny, TEXTS[:1], state).candidate
    tok = tiny.tokenizer
    ada = tok([TEXTS[0]], return_tensors="pt")["input_ids"]
    ada_logits = first.model(ada).logits
    second = scope_night(tiny, TEXTS[1:2], state, backend=first).candidate
    assert len(scope_of(second.model).entries) == 2 and len(scope_of(first.model).entries) == 1
    # Ada's text reads night 1's weights; night 2 learned Otto; unrelated text is as before
    assert torch.allclose(second.model(ada).logits, ada_logits, atol=1e-4)
    assert torch.allclose(first.model(ada).logits, ada_logits)
    otto = TEXTS[1]
    assert (second.token_nll([otto])[0].mean().item()
            < first.token_nll([otto])[0].mean().item() - 0.2)
    ids = tok([TEXTS[2]], return_tensors="pt")["input_ids"]
    assert torch.allclose(second.model(ids).logits, tiny.model(ids).logits, atol=1e-5)


def test_scope_epochs_set_the_passes_of_a_night_under_a_scope(tiny):
    cfg = tiny_cfg("scope", scope_lr=3e-3, scope_epochs=0)  # 0: train.epochs
    cfg.train.epochs = 2
    two = run_night(tiny, [Ep(0, TEXTS[0])], cfg, SleepState()).report["steps"]
    cfg.scope_epochs = 6
    six = run_night(tiny, [Ep(0, TEXTS[0])], cfg, SleepState()).report["steps"]
    assert six == 3 * two and two > 0
    with pytest.raises(ValueError, match="scope_epochs must be >= 0"):
        SleepConfig(scope_epochs=-1)


def test_a_scoped_night_commits_as_a_snapshot_and_serves_back_with_its_scope(tiny, tmp_path):
    from reverie import snapshots
    from reverie.models.scope import scope_of
    now = scope_night(tiny).candidate
    sid = snapshots.commit(tmp_path, now, {"parent": None})
    assert (snapshots.root(tmp_path) / sid / "scope.safetensors").is_file()
    back = snapshots.load(tmp_path, sid)
    assert len(scope_of(back.model).entries) == 1
    tok = tiny.tokenizer
    for text in (TEXTS[0], TEXTS[2]):
        ids = tok([text], return_tensors="pt")["input_ids"]
        assert torch.allclose(back.model(ids).logits, now.model(ids).logits, atol=1e-5)
