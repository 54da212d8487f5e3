"""MemoryConfig: every knob of the hippocampus, validated, loadable from configs/<preset>.yaml."""

from dataclasses import dataclass

from reverie.config import field, positive


@dataclass
class MemoryConfig:
    # ---------------------------------------------------------------- recall
    recall_k: int = field(5, "episodes recall returns (after fusion)")
    candidates: int = field(50, "candidates each retriever (BM25, dense) hands to the fusion")
    rrf_k: float = field(60.0, "reciprocal-rank-fusion constant: score = sum 1/(rrf_k + rank)")
    context_tokens: int = field(256, "token budget of the assembled context (model tokens); the "
                                     "world model was trained on contexts of about this size")
    supersede_threshold: float = field(0.95, "claim score (cos of value-masked frames + cos of "
                                             "values capped at 0.5: -2..1.5) at which a newer "
                                             "sentence about the same subject replaces the "
                                             "older one; measured on world updates, same-fact "
                                             "pairs score 0.83-1.5, other-fact pairs 0.56-0.99")
    supersede_margin: float = field(0.1, "how far the best older sentence must beat the "
                                         "runner-up of its episode to be replaced")
    # Measured on world statements and updates (3 people, 1,620 newer/older sentence pairs):
    # the threshold alone let 19 pairs about different facts through, e.g. "hometown is Dublin"
    # over "relocated and now works in Boston" (frames 0.46 alike, values two cities, 0.50),
    # with 182 of 342 same-fact pairs. A frame floor of 0.5: 17 and 180. A value floor of 0.25
    # too ("works for Zeta Labs" over "works in Rome": frames 0.89, values 0.27) left 0 and
    # 142, but the memory bench at 5,000 episodes read more stale sentences: update_new 0.900
    # (no floor) -> 0.901 (frame floor) -> 0.862 (both floors). So the value floor is off.
    supersede_min_frame: float = field(0.5, "cos of the value-masked frames a replacing "
                                            "sentence needs at least (the same kind of claim)")
    supersede_min_value: float = field(-1.0, "cos of the values a replacing sentence needs at "
                                             "least (-1: off; see the measurement above)")
    # ---------------------------------------------------------------- ingest
    max_text_bytes: int = field(1_000_000, "longest episode accepted, UTF-8 bytes; split longer "
                                           "documents before ingesting")
    duplicate_threshold: float = field(0.85, "cosine similarity at or above which an episode "
                                             "naming the same entities (Jaccard >= 0.8) is a "
                                             "repeat of a stored one; re-worded copies score "
                                             "about 0.9, other people's biographies under 0.7")
    embed_tokens: int = field(128, "tokens of each episode the embedder reads (MiniLM was trained "
                                   "on 128)")
    bf16: bool = field(True, "bf16 autocast for the embedder and the surprise pass (2x faster "
                             "on CPU; cosine to fp32 > 0.9999)")
    # ---------------------------------------------------------------- salience -> priority
    w_surprise: float = field(0.6, "weight of surprise (normalised model NLL of the claimed "
                                   "values, 0..1): the main signal of news")
    w_novelty: float = field(0.1, "weight of novelty (1 - max similarity to stored, 0..1)")
    w_entities: float = field(0.05, "weight of entity novelty: share of the episode's named "
                                    "entities the namespace has not stored before, 0..1")
    w_repetition: float = field(0.5, "priority grows by this share per ln(1 + repeats): a "
                                     "repeat strengthens the original")
    w_feedback: float = field(0.5, "weight of explicit feedback (important = 1)")
    surprise_scale: float = field(6.0, "mean NLL (nats per token) mapped to surprise 1.0; "
                                       "lower values scale linearly, higher ones clip")
    half_life_days: float = field(30.0, "recency decay: priority halves every this many days")
    # ---------------------------------------------------------------- pruning
    capacity: int = field(1_000_000, "hard cap of episodes per namespace; the lowest-priority "
                                     "unpinned ones are evicted first")
    ttl_days: float = field(90.0, "episodes older than this whose decayed priority is below "
                                  "evict_below are evicted")
    evict_below: float = field(0.1, "decayed priority under which an old episode is evicted")
    reservoir: int = field(1000, "consolidated episodes per namespace kept for rehearsal; the "
                                 "rest are released from recall")
    release_after_days: float = field(7.0, "a consolidated episode stays in recall until it is "
                                           "this old: a night may learn a fact only in part, "
                                           "and recall answers for it meanwhile (0: release at "
                                           "once)")

    def __post_init__(self):
        positive(self, "recall_k", "candidates", "rrf_k", "context_tokens", "max_text_bytes",
                 "embed_tokens", "surprise_scale", "half_life_days", "capacity", "ttl_days")
        if not 0 < self.duplicate_threshold <= 1:
            raise ValueError(f"duplicate_threshold must be in (0, 1], got "
                             f"{self.duplicate_threshold}")
        if not 0 < self.supersede_threshold <= 2:
            raise ValueError(f"supersede_threshold must be in (0, 2], got "
                             f"{self.supersede_threshold}")
        for name in ("supersede_min_frame", "supersede_min_value"):
            if not -1 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [-1, 1] (a cosine), got "
                                 f"{getattr(self, name)}")
        for name in ("supersede_margin", "w_surprise", "w_novelty", "w_entities",
                     "w_repetition", "w_feedback", "evict_below", "reservoir",
                     "release_after_days"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.candidates < self.recall_k:
            raise ValueError(f"candidates ({self.candidates}) must be >= recall_k "
                             f"({self.recall_k})")
