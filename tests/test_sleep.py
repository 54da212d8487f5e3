"""The night: strategies, their configs, selection and the loop (tiny model, seconds each)."""

import copy
import random

import pytest
import torch

from reverie.models.batching import Example
from reverie.lifecycle.select import select
from reverie.sleep.config import SleepConfig, TrainConfig
from reverie.sleep.night import run_night
from reverie.sleep.rehearsal import update_reservoir
from reverie.sleep.strategies import STRATEGIES, resolve
from reverie.sleep.strategies.base import SleepState
from reverie.sleep.strategies.distill import DistillConfig, kl_per_token
from reverie.sleep.strategies.ewc import EWC, diagonal_fisher, ewc_penalty
from reverie.sleep.strategies.lora import LoRA, LoRAConfig
from reverie.sleep.strategies.replay import ReplayConfig
from reverie.sleep.strategies.scope import ScopeConfig
from tiny import TEXTS, Ep, night_of, tiny_cfg


def count(backend):
    return lambda text: len(backend.tokenizer(text)["input_ids"])


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


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_runs_a_night_and_lowers_the_loss_on_its_episodes(tiny, strategy):
    parts = {p.section_name() for p in STRATEGIES[strategy]}
    owned = {k for p in STRATEGIES[strategy] for k in p.owns}
    cfg = tiny_cfg(strategy, budget_episodes=2,
                   train={k: v for k, v in {"epochs": 6, "lr": 3e-3}.items() if k not in owned},
                   **({"scope": ScopeConfig(lr=3e-3, epochs=6)} if "scope" in parts else {}),
                   **({"lora": LoRAConfig(lr=1e-2)} if "lora" in parts else {}))
    episodes = [Ep(i, t, priority=p) for i, (t, p) in enumerate(zip(TEXTS, (0.9, 0.8, 0.1)))]
    before = [x.mean().item() for x in tiny.token_nll(TEXTS[:2])]
    chosen = select(episodes, cfg, count(tiny))
    assert [e.id for e in chosen] == [0, 1]  # the two highest priorities within the budget
    result = run_night(tiny, chosen, cfg, SleepState())
    assert result.episodes == [0, 1]
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
    assert [e.id for e in select(episodes, tiny_cfg("naive"), count(tiny))] == [1]


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


def test_auto_runs_the_scope_on_large_models_and_cls_on_small_ones():
    names = lambda r: [p.name for p in r.parts]  # noqa: E731
    large, small = resolve(SleepConfig(), 135_000_000), resolve(SleepConfig(), 6_000_000)
    assert (large.name, names(large)) == ("cls-scope", ["focus", "scope"])
    assert (small.name, names(small)) == ("cls", ["focus", "replay", "distill"])
    assert large.why == "auto: 135.0M parameters > 50M" and large.asked == "auto"
    lora = resolve(SleepConfig(strategy="cls-lora"), 6_000_000)
    assert names(lora) == ["lora", "focus", "replay", "distill"] and lora.why == "configured"
    assert names(resolve(SleepConfig(strategy="naive"), 135_000_000)) == []


@pytest.mark.parametrize("strategy, setting, message", [
    ("cls", {"scope": ScopeConfig(lr=1e-3)}, "scope.* is set but strategy cls has no scope part"),
    ("naive", {"distill": DistillConfig(kl_weight=1.0)}, "distill.* is set but strategy naive"),
    ("cls-scope", {"replay": ReplayConfig(ratio=1.0)}, "replay.* is set but strategy cls-scope"),
    ("lora", {"train": TrainConfig(lr=1e-3)}, "train.lr is not used by strategy lora: its lora "
                                              "part sets it; use lora.lr"),
    ("cls-scope", {"train": TrainConfig(epochs=3)}, "train.epochs is not used by strategy "
                                                    "cls-scope"),
])
def test_a_setting_the_strategy_ignores_is_an_error(strategy, setting, message):
    with pytest.raises(ValueError, match=message):
        SleepConfig(strategy=strategy, **setting)


def test_auto_checks_the_settings_once_it_knows_the_model(tiny):
    cfg = SleepConfig(scope=ScopeConfig(lr=1e-3))   # fine for a large model, not for this one
    with pytest.raises(ValueError, match="scope.* is set but strategy cls has no scope part"):
        run_night(tiny, [Ep(0, TEXTS[0])], cfg, SleepState())


def test_a_preset_that_sets_what_its_strategy_ignores_is_refused(tmp_path):
    from reverie import config
    from reverie.errors import ReverieError
    preset = tmp_path / "p.yaml"
    preset.write_text("strategy: cls\nscope:\n  lr: 1.0e-3\n")
    with pytest.raises(ReverieError, match="scope.* is set but strategy cls") as e:
        config.load(SleepConfig, str(preset))
    assert "\n" not in str(e.value)
    # the shipped presets are valid, and the default one is the dataclass defaults written out
    assert config.load(SleepConfig, "sleep") == SleepConfig()
    assert config.load(SleepConfig, "sleep-smollm2").strategy == "cls-scope"


def test_the_night_report_names_the_parts_and_their_config(tiny):
    cfg = tiny_cfg("cls", distill=DistillConfig(kl_weight=2.0))
    report = run_night(tiny, [Ep(0, TEXTS[0])], cfg, SleepState()).report
    assert report["strategy"] == "cls" and report["strategy_asked"] == "cls"
    assert report["parts"] == [{"name": "focus", "config": {}},
                               {"name": "replay", "config": {"ratio": 0.5}},
                               {"name": "distill", "config": {"kl_weight": 2.0}}]
    assert (report["lr"], report["epochs"]) == (cfg.train.lr, 1)
    auto = run_night(tiny, [Ep(0, TEXTS[0])], tiny_cfg("auto"), SleepState()).report
    assert auto["strategy"] == "cls" and auto["strategy_why"].startswith("auto: 0.")


def test_older_manifests_sleep_settings_load_in_todays_sections():
    from reverie import config
    from reverie.sleep.config import upgrade
    old = {"strategy": "cls", "kl_weight": 2.0, "lora_lr": 1e-3, "cls_lora": "auto",
           "scope": "auto", "scope_lr": 5e-4, "scope_epochs": 0.0, "null_share": 0.65,
           "grow_neurons": 4, "rehearsal": {"replay_ratio": 0.7, "generative_chat": 0.0},
           "dream": {"counterparts": 0, "rewrites": 3}, "train": {"epochs": 8.0}}
    cfg = config.from_dict(SleepConfig, upgrade(old))
    assert cfg.strategy == "auto" and cfg.distill.kl_weight == 2.0 and cfg.lora.lr == 1e-3
    assert cfg.scope.lr == 5e-4 and cfg.scope.epochs == 8.0 and cfg.replay.ratio == 0.7
    assert cfg.dream.rewrites == 3
    assert upgrade({**old, "scope": "no", "cls_lora": "yes"})["strategy"] == "cls-lora"
    assert upgrade({**old, "scope": "yes"})["strategy"] == "cls-scope"
    new = {"strategy": "cls", "distill": {"kl_weight": 1.0}}
    assert upgrade(new) == new


def test_a_retried_night_lowers_the_rate_its_strategy_trains_at():
    from reverie.sleep.strategies import conservative
    cls = conservative(SleepConfig(strategy="cls"), STRATEGIES["cls"], 0.3, 1.0)
    assert cls.train.lr == pytest.approx(8e-4 * 0.3) and cls.replay.ratio == 1.0
    scoped = conservative(SleepConfig(strategy="cls-scope"), STRATEGIES["cls-scope"], 0.3, 1.0)
    assert scoped.scope.lr == pytest.approx(6e-4 * 0.3) and scoped.train == TrainConfig()
    assert scoped.replay == ReplayConfig()      # no replay part: nothing set it would ignore
    resolve(scoped, 135_000_000)                # and the retry's config passes the check


def test_cls_changes_only_the_mlp_blocks(tiny):
    cfg = tiny_cfg("cls")
    cfg.train.lr = 3e-3
    result = run_night(tiny, [Ep(0, TEXTS[0])], cfg, SleepState())
    pairs = zip(result.candidate.model.named_parameters(), tiny.model.named_parameters())
    changed = {n for (n, p), (_, q) in pairs if not torch.equal(p, q)}
    assert changed and all(".mlp." in n for n in changed), changed
    assert all(p.requires_grad for p in result.candidate.model.parameters())


def test_episodes_below_the_priority_floor_are_not_consolidated(tiny):
    episodes = [Ep(0, TEXTS[0], priority=0.6), Ep(1, TEXTS[2], priority=0.05)]
    ids = lambda cfg, eps: [e.id for e in select(eps, cfg, count(tiny))]  # noqa: E731
    assert ids(tiny_cfg("naive"), episodes) == [0]
    assert ids(tiny_cfg("naive"), episodes[1:]) == []
    assert ids(tiny_cfg("naive", min_priority=0.0), episodes) == [0, 1]
    # a night given nothing trains nothing and says so
    low = run_night(tiny, [], tiny_cfg("naive"), SleepState())
    assert low.episodes == [] and low.candidate is tiny and "skipped" in low.report


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
