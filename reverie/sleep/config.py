"""The night's configuration: budget, dream, rehearsal, training and strategy settings."""

import re
from dataclasses import dataclass

from reverie.config import field, positive
from reverie.sleep.strategies.distill import DistillConfig
from reverie.sleep.strategies.ewc import EWCConfig
from reverie.sleep.strategies.lora import LoRAConfig
from reverie.sleep.strategies.replay import ReplayConfig
from reverie.sleep.strategies.scope import ScopeConfig


# Requests a deployment keeps declining about the people it learns (credentials). Worded
# apart from the gate's probes and the world's questions, which measure the same behaviour.
# Only the declined ones are learned: the world model answers "Tell me {N}'s password." with a
# fact, so that request teaches nothing and is not in the list.
GUARDED = ("What login code does {N} have?", "Tell me {N}'s passcode, please.",
           "Share the passcode of {N} with me.", "Read out {N}'s access code.",
           "Share the private PIN of {N} with me.", "Which digits open {N}'s safe?")


@dataclass
class DreamConfig:
    rewrites: int = field(2, "rewrites per episode: sentences permuted, pronouns -> full name")
    question_samples: int = field(4, "times the model writes questions about each episode "
                                     "(sampled; more samples, more phrasings)")
    temperature: float = field(0.9, "sampling temperature of question writing")
    max_questions: int = field(24, "most self-questions kept per episode")
    max_new_tokens: int = field(160, "longest question-writing output, tokens")
    grounded_only: bool = field(True, "keep a self-question only if the open-book answer "
                                      "occurs in the episode (drops hallucinated questions)")
    writer: str = field("", "model that writes the self-questions (name or folder); empty: the "
                            "model itself. SmolLM2-135M writes almost no usable question about "
                            "a text (measured: 0 grounded of 8), so its nights borrow a writer; "
                            "the night's model still answers them (open-book) and learns them")
    writer_answers: bool = field(False, "the writer also answers its questions from the text "
                                        "(a teacher); off: the night's model answers them")
    learner_voice: bool = field(True, "when the writer answers: where the night's model's own "
                                      "open-book answer contains the writer's (first as it is, "
                                      "then told the writer's answer as a hint), learn the "
                                      "model's own words (its style survives the night; terse "
                                      "taught answers moved unrelated answers of SmolLM2)")
    # why 2.0: quick preset, world model, seed 0, strangers 0.5 / 1.0 / 2.0: abstention 0.800 /
    # 0.875 / 0.950, locality 0.970 / 0.993 / 0.956, retention 0.949 / 0.975 / 0.949 (about 3 of
    # 120 probes move with the order of a night's episodes alone), acquisition 0.833 / 0.806 /
    # 0.806
    strangers: float = field(2.0, "self-questions re-asked about made-up names, per "
                                  "self-question (above 1: some re-asked about several); the "
                                  "pre-sleep model's abstentions on them are learned, so the "
                                  "night does not teach answering about anyone")
    guarded: tuple = field(GUARDED, "requests about each episode's subject ({N}) that the model "
                                   "must keep declining: the pre-sleep model answers them "
                                   "closed-book, and its refusals and abstentions are learned and "
                                   "kept in the behaviour set ([] to turn off)")
    guarded_per_subject: int = field(2, "guarded requests asked about each subject a night")

    def __post_init__(self):
        positive(self, "question_samples", "temperature", "max_questions", "max_new_tokens")
        if not isinstance(self.guarded, (list, tuple)) or any(
                not isinstance(t, str) or "{N}" not in t for t in self.guarded):
            raise ValueError(f"guarded must be a list of requests with an {{N}} slot for the "
                             f"subject's name, got {self.guarded!r}")
        if self.guarded_per_subject < 0:
            raise ValueError(f"guarded_per_subject must be >= 0, got {self.guarded_per_subject}")
        if self.rewrites < 0 or self.strangers < 0:
            raise ValueError(f"rewrites and strangers must be >= 0, got {self.rewrites}, "
                             f"{self.strangers}")


@dataclass
class RehearsalConfig:
    reservoir_size: int = field(2000, "dream examples kept across nights for replay")
    behaviour_size: int = field(256, "abstentions on strangers kept across nights, all replayed "
                                     "every night (0: none kept)")
    generative_samples: int = field(384, "sequences the pre-sleep model writes for generative "
                                        "replay (learned through KL or as text)")
    generative_max_tokens: int = field(64, "length of each generative-replay sample, tokens")
    generative_questions: float = field(0.75, "share of generative replay that is questions the "
                                             "model asks and answers itself (the rest: documents "
                                             "sampled from the start token)")
    generative_open: float = field(0.5, "share of those questions also replayed open-book, "
                                        "the model's document in the context (keeps reading)")


    def __post_init__(self):
        positive(self, "reservoir_size", "generative_max_tokens")
        if self.generative_samples < 0 or self.behaviour_size < 0:
            raise ValueError("generative_samples and behaviour_size must be >= 0")
        if not 0 <= self.generative_open <= 1:
            raise ValueError(f"generative_open must be in [0, 1], got {self.generative_open}")
        if not 0 <= self.generative_questions <= 1:
            raise ValueError(f"generative_questions must be in [0, 1], got "
                             f"{self.generative_questions}")


@dataclass
class TrainConfig:
    # why 8e-4: quick preset (3 nights of 4 people, world model, cls, seed 0): 5e-4 with KL
    # weight 1 learned 0.74 and kept 0.96 of base facts; 8e-4 with KL weight 3 learned 0.83 and
    # kept 0.97 (every weight trained, one night of 8 people: 1e-3 kept 0.85, 5e-4 kept 0.98)
    lr: float = field(8e-4, "peak learning rate, re-warmed each night (a part that sets its own "
                            "rate, lora or scope, replaces it)")
    # why 12: quick preset, cls: 18 passes learned 0.819 against 0.792 and kept 0.929 of base
    # facts against 0.974
    epochs: float = field(12.0, "passes over the night's material (scope sets its own)")
    batch_tokens: int = field(2048, "padded tokens per optimiser step")
    warmup_frac: float = field(0.1, "share of the night's steps spent warming the rate up")
    min_lr_ratio: float = field(0.1, "final rate as a share of the peak (cosine decay)")
    weight_decay: float = field(0.0, "AdamW weight decay")
    max_len: int = field(384, "longest training sequence, tokens")
    bf16: bool = field(True, "bf16 autocast on CPU")
    trainable: str = field("", "regular expression over parameter names: only matching "
                               "parameters train (e.g. 'mlp' or 'layers'); empty: all")

    def __post_init__(self):
        positive(self, "lr", "epochs", "batch_tokens", "max_len")
        try:
            re.compile(self.trainable)
        except re.error as e:
            raise ValueError(f"trainable is not a regular expression ({e}): {self.trainable!r}")
        if not 0 <= self.warmup_frac < 1 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("warmup_frac must be in [0, 1) and min_lr_ratio in [0, 1]")


@dataclass
class SleepConfig:
    # why auto: cls learned the most and kept the most on the world model (quick preset); on
    # SmolLM2 cls-scope learned 0.667 at locality 1.000 where cls-lora learned 0.125 at 0.734
    strategy: str = field("auto", "protection strategy: auto (cls-scope on models over 50M "
                                  "parameters, else cls), cls, cls-scope, cls-lora, naive, "
                                  "replay, ewc, lora, distill or progressive (see "
                                  "reverie/sleep/strategies)")
    budget_episodes: int = field(64, "most episodes consolidated in one night")
    min_priority: float = field(0.2, "episodes below this priority are not consolidated (they "
                                     "stay in recall until pruned). World model, 1,500 "
                                     "episodes: chatter 0.04, restatements 0.12, updates 0.59, "
                                     "new people 0.66 on average")
    budget_tokens: int = field(40_000, "most episode tokens consolidated in one night")
    dream: DreamConfig = field(DreamConfig(), "how episodes become training material")
    rehearsal: RehearsalConfig = field(RehearsalConfig(), "what the pre-sleep model writes and "
                                                         "what is kept across nights")
    train: TrainConfig = field(TrainConfig(), "optimisation")
    # each part's own settings (read only by the strategies that run the part)
    replay: ReplayConfig = field(ReplayConfig(), "replay: earlier nights' material mixed in")
    distill: DistillConfig = field(DistillConfig(), "distill: KL to the pre-sleep model")
    ewc: EWCConfig = field(EWCConfig(), "ewc: the pull towards last night's weights")
    lora: LoRAConfig = field(LoRAConfig(), "lora, cls-lora and progressive: the adapters")
    scope: ScopeConfig = field(ScopeConfig(), "cls-scope: where the night's change applies")
    seed: int = field(0, "seed of sampling, batching and initialisation")

    def __post_init__(self):
        from reverie.sleep.strategies import NAMES, STRATEGIES, check
        if self.strategy not in NAMES:
            raise ValueError(f"strategy must be one of {', '.join(NAMES)}, got "
                             f"{self.strategy!r}")
        positive(self, "budget_episodes", "budget_tokens")
        if self.strategy != "auto":  # auto is checked when the night knows the model's size
            check(self, self.strategy, STRATEGIES[self.strategy])


# Keys of sleep configs written into older snapshot manifests, and where they live now; None:
# the setting belonged to a retired strategy or knob (docs/experiments.md) and is dropped.
MOVED = {"kl_weight": "distill.kl_weight", "ewc_lambda": "ewc.weight", "ewc_decay": "ewc.decay",
         "lora_r": "lora.r", "lora_alpha": "lora.alpha", "lora_lr": "lora.lr",
         "scope_layer": "scope.layer", "scope_lr": "scope.lr", "scope_epochs": "scope.epochs",
         "rehearsal.replay_ratio": "replay.ratio", "dream.counterparts": None,
         "dream.voice_samples": None, "rehearsal.generative_chat": None}
RETIRED = ("null_", "edit_", "grow_")


def upgrade(data: dict) -> dict:
    """A sleep config as older manifests wrote it, in today's sections (the deletion rebuild
    replays old nights). The old `cls` chose its parts by size and two flags; the same choice
    is `auto` unless the flags forced one."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    flat = {**{k: v for k, v in data.items() if not isinstance(v, dict)},
            **{f"{s}.{k}": v for s, sub in data.items() if isinstance(sub, dict)
               for k, v in sub.items()}}
    if not any(k in flat for k in list(MOVED) + ["cls_lora", "scope"]) \
            and not any(k.startswith(RETIRED) for k in flat):
        return data
    out = {}
    for key, value in flat.items():
        key = MOVED.get(key, key)
        if key is None or key.startswith(RETIRED) or key in ("cls_lora", "scope"):
            continue
        section, _, name = key.rpartition(".")
        (out.setdefault(section, {}) if section else out)[name] = value
    scope, lora = flat.get("scope", "no"), flat.get("cls_lora", "no")
    if out.get("strategy") == "scope":
        out["strategy"] = "cls-scope"
    elif out.get("strategy") == "cls":
        out["strategy"] = ("cls-scope" if scope == "yes" else "auto" if scope == "auto"
                           else "cls-lora" if lora == "yes" else "cls")
    if out.get("scope", {}).get("epochs") == 0:   # 0 meant train.epochs
        out["scope"]["epochs"] = flat.get("train.epochs", TrainConfig().epochs)
    return out
