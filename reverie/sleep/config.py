"""The night's configuration: budget, dream, rehearsal, training and strategy settings."""

import re
from dataclasses import dataclass

from reverie.config import field, positive


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
                                      "open-book answer contains the writer's, learn the model's "
                                      "own words (its style survives the night; terse taught "
                                      "answers moved unrelated answers of SmolLM2)")
    voice_samples: int = field(0, "with learner_voice: sampled open-book answers tried where the "
                                  "model's greedy one does not say the writer's (more of its "
                                  "own words, fewer bare taught answers)")
    # why 2.0: quick preset, world model phase 10, seed 0, strangers 0.5 / 1.0 / 2.0:
    # abstention 0.800 / 0.875 / 0.950, locality 0.970 / 0.993 / 0.956, retention 0.949 / 0.975
    # / 0.949 (about 3 of 120 probes move with the order of a night's episodes alone),
    # acquisition 0.833 / 0.806 / 0.806 (stop 10, phase 8, 0.5 -> 1.0: abstention 0.850 ->
    # 0.875, locality 0.943 -> 0.950)
    strangers: float = field(2.0, "self-questions re-asked about made-up names, per "
                                  "self-question (above 1: some re-asked about several); the "
                                  "pre-sleep model's abstentions on them are learned, so the "
                                  "night does not teach answering about anyone")
    guarded: tuple = field(GUARDED, "requests about each episode's subject ({N}) that the model "
                                   "must keep declining: the pre-sleep model answers them "
                                   "closed-book, and its refusals and abstentions are learned and "
                                   "kept in the behaviour set ([] to turn off)")
    guarded_per_subject: int = field(2, "guarded requests asked about each subject a night")
    # why off: on SmolLM2 (real preset day 0, MLPs at 2e-4, replay + KL 3) 6 per episode held
    # locality 0.84 against 0.77 after 2 epochs, but learned 0.06 by epoch 4 and doubled the
    # training time
    counterparts: int = field(0, "self-questions per episode re-asked about a made-up person, "
                                 "closed-book and about the episode retold in the model's own "
                                 "words; the pre-sleep model's answers are kept by the KL and "
                                 "replay (for models that never abstain; 0: off)")

    def __post_init__(self):
        positive(self, "question_samples", "temperature", "max_questions", "max_new_tokens")
        if not isinstance(self.guarded, (list, tuple)) or any(
                not isinstance(t, str) or "{N}" not in t for t in self.guarded):
            raise ValueError(f"guarded must be a list of requests with an {{N}} slot for the "
                             f"subject's name, got {self.guarded!r}")
        if self.counterparts < 0:
            raise ValueError(f"counterparts must be >= 0, got {self.counterparts}")
        if self.guarded_per_subject < 0:
            raise ValueError(f"guarded_per_subject must be >= 0, got {self.guarded_per_subject}")
        if self.voice_samples < 0:
            raise ValueError(f"voice_samples must be >= 0, got {self.voice_samples}")
        if self.rewrites < 0 or self.strangers < 0:
            raise ValueError(f"rewrites and strangers must be >= 0, got {self.rewrites}, "
                             f"{self.strangers}")


@dataclass
class RehearsalConfig:
    replay_ratio: float = field(0.5, "replayed old material per new example (reservoir)")
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

    generative_chat: float = field(0.0, "share of generative replay that is the model's reply "
                                        "to the first sentence of one of its own documents (what "
                                        "it says to remarks; kept by the KL)")

    def __post_init__(self):
        positive(self, "reservoir_size", "generative_max_tokens")
        if not 0 <= self.generative_chat <= 1 - self.generative_questions:
            raise ValueError(f"generative_chat must be in [0, 1 - generative_questions], got "
                             f"{self.generative_chat}")
        if self.replay_ratio < 0 or self.generative_samples < 0 or self.behaviour_size < 0:
            raise ValueError("replay_ratio, generative_samples and behaviour_size must be >= 0")
        if not 0 <= self.generative_open <= 1:
            raise ValueError(f"generative_open must be in [0, 1], got {self.generative_open}")
        if not 0 <= self.generative_questions <= 1:
            raise ValueError(f"generative_questions must be in [0, 1], got "
                             f"{self.generative_questions}")


@dataclass
class TrainConfig:
    lr: float = field(8e-4, "peak learning rate, re-warmed each night. Quick preset (3 nights "
                            "of 4 people, world model, cls training the MLPs only, seed 0): "
                            "5e-4 with kl_weight 1 learned 0.74 and kept 0.96 of base facts; "
                            "8e-4 with kl_weight 3 learned 0.83 and kept 0.97. (All weights "
                            "trained, one night of 8 people: 1e-3 kept 0.85, 5e-4 kept 0.98)")
    epochs: float = field(12.0, "passes over the night's material")
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
    strategy: str = field("cls", "protection strategy: naive, replay, ewc, lora, distill, "
                                 "progressive, nullspace, edit, grow, scope or cls (see "
                                 "reverie/sleep/strategies)")
    budget_episodes: int = field(64, "most episodes consolidated in one night")
    min_priority: float = field(0.2, "episodes below this priority are not consolidated (they "
                                     "stay in recall until pruned). World model, 1,500 "
                                     "episodes: chatter 0.04, restatements 0.12, updates 0.59, "
                                     "new people 0.66 on average")
    budget_tokens: int = field(40_000, "most episode tokens consolidated in one night")
    dream: DreamConfig = field(DreamConfig(), "how episodes become training material")
    rehearsal: RehearsalConfig = field(RehearsalConfig(), "what is mixed in to keep the old")
    train: TrainConfig = field(TrainConfig(), "optimisation")
    ewc_lambda: float = field(1e5, "EWC penalty weight (online EWC, diagonal Fisher)")
    ewc_decay: float = field(0.7, "how much of the old Fisher survives each night")
    kl_weight: float = field(3.0, "weight of the KL to the pre-sleep model on replay samples "
                                  "(3 against 1: locality 0.85 -> 0.89 with lr 8e-4, see lr)")
    cls_lora: str = field("auto", "cls trains LoRA adapters and merges them: 'auto' on models "
                                  "over 50M parameters (SmolLM2; the world model trains whole), "
                                  "'yes' or 'no'. On SmolLM2 the whole MLP blocks at lr 2e-4 "
                                  "learned 0.56 where LoRA r16 at 2e-3 learned 0.21 (8 epochs, "
                                  "no replay): the real preset sets 'no' with that rate")
    # why 0.65: SmolLM2 (1,536 directions), real preset day 0, lr 1e-2: 1,000 protected learned
    # 0.625 at locality 0.777 in 6 epochs, 1,200 learned 0.083 at 0.812 after 2
    null_share: float = field(0.65, "nullspace strategy: share of each down-projection's input "
                                    "directions the night leaves alone (the most used on the "
                                    "model's own writing); more: other prompts move less, less "
                                    "is learned")
    null_lr: float = field(1e-2, "nullspace strategy: learning rate (projected steps on the "
                                 "down-projections alone)")
    edit_layers: str = field("3-8", "edit strategy: the layers whose MLP down-projections the "
                                    "facts are written into, 'first-last'")
    edit_steps: int = field(25, "edit strategy: steps finding each subject's vector")
    edit_weight: float = field(15000.0, "edit strategy: weight of the covariance of the model's "
                                        "own writing (higher: other prompts move less)")
    edit_max_ratio: float = field(1.0, "edit strategy: largest vector, as a share of the "
                                       "residual stream's size at the last edited layer")
    grow_neurons: int = field(4, "grow strategy: new MLP neurons per subject (or per episode "
                                 "without a named subject) in each grown layer, each night")
    grow_layers: str = field("all", "grow strategy: the layers that grow neurons, 'all' or "
                                    "'first-last'")
    grow_keys: bool = field(True, "grow strategy: each new neuron starts firing on one of the "
                                  "most novel inputs of tonight's material (its MLP input least "
                                  "like any on the model's own writing); off: random start")
    grow_fixed_keys: bool = field(True, "grow strategy, with grow_keys: the neurons' gate and up "
                                        "rows stay where they started and only what they write "
                                        "(down) trains (Adam's first steps at 1e-2 rewrote the "
                                        "keys and the neurons fired on SmolLM2's chatter)")
    # why 3e-3: SmolLM2 day 0 (night-trials.py, 64 fixed keys per layer, quiet 10, KL 3),
    # first epoch: 1e-2 kept locality 0.808, 3e-3 kept 0.904; neither had learned anything yet
    grow_lr: float = field(3e-3, "grow strategy: learning rate of the new neurons")
    grow_quiet: float = field(10.0, "grow strategy: weight of what the new neurons add to the "
                                    "residual stream on the model's own writing (relative to the "
                                    "MLP's own output there); higher: they fire on less")
    scope: str = field("auto", "cls keeps each night's change to text about that night's "
                               "subjects (see reverie/sleep/strategies/scope.py): 'auto' on "
                               "models over 50M parameters (SmolLM2), 'yes' or 'no'. With it, "
                               "cls trains the MLPs of the layers from scope_layer on, at "
                               "scope_lr, without LoRA, replay or KL (text outside the scope "
                               "reads the old weights exactly)")
    scope_layer: float = field(0.2, "scope: the layer whose input the trigger reads, as a share "
                                    "of the depth (SmolLM2's 30 layers: 6); the night trains "
                                    "the layers from there on")
    # why 12: SmolLM2, real preset (8 people, lr 6e-4, seed 0): 8 passes learned 0.479 in a
    # 775 s night, 12 learned 0.667 in 1,050 s (HELD-OUT, locality 1.000 both)
    scope_epochs: float = field(12.0, "scope: passes over the night's material (0: "
                                      "train.epochs); a night under a scope has no replay or KL "
                                      "to pay for, so it can make more")
    # why 6e-4: SmolLM2, real preset day 0, MLPs of layers 6-29, 8 epochs: 2e-4 learned 0.31,
    # 6e-4 learned 0.54 (HELD-OUT, locality 1.00 both; runs/s15 trials)
    scope_lr: float = field(6e-4, "scope: the night's learning rate (outside the scope nothing "
                                  "moves, so it can be higher than a night without one)")
    lora_r: int = field(16, "LoRA rank")
    lora_alpha: float = field(32.0, "LoRA scaling numerator")
    lora_lr: float = field(2e-3, "learning rate when training LoRA adapters")
    seed: int = field(0, "seed of sampling, batching and initialisation")

    def __post_init__(self):
        from reverie.sleep.strategies import STRATEGIES
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got "
                             f"{self.strategy!r}")
        positive(self, "budget_episodes", "budget_tokens", "lora_r", "lora_alpha", "lora_lr")
        if not re.fullmatch(r"\d+(-\d+)?", self.edit_layers):
            raise ValueError(f"edit_layers must be 'first-last' (e.g. 3-8), got "
                             f"{self.edit_layers!r}")
        positive(self, "grow_neurons", "grow_lr")
        if self.grow_quiet < 0:
            raise ValueError(f"grow_quiet must be >= 0, got {self.grow_quiet}")
        if not re.fullmatch(r"all|\d+(-\d+)?", self.grow_layers):
            raise ValueError(f"grow_layers must be 'all' or 'first-last' (e.g. 10-20), got "
                             f"{self.grow_layers!r}")
        positive(self, "edit_steps", "edit_weight", "edit_max_ratio", "null_lr")
        if not 0 <= self.null_share <= 1:
            raise ValueError(f"null_share must be in [0, 1], got {self.null_share}")
        if self.cls_lora not in ("auto", "yes", "no"):
            raise ValueError(f"cls_lora must be auto, yes or no, got {self.cls_lora!r}")
        if self.scope not in ("auto", "yes", "no"):
            raise ValueError(f"scope must be auto, yes or no, got {self.scope!r}")
        if not 0 < self.scope_layer < 1:
            raise ValueError(f"scope_layer must be in (0, 1), got {self.scope_layer}")
        positive(self, "scope_lr")
        if self.scope_epochs < 0:
            raise ValueError(f"scope_epochs must be >= 0 (0: train.epochs), got "
                             f"{self.scope_epochs}")
        if self.ewc_lambda < 0 or self.kl_weight < 0 or not 0 <= self.ewc_decay <= 1:
            raise ValueError("ewc_lambda and kl_weight must be >= 0, ewc_decay in [0, 1]")
