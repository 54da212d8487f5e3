"""Dream: turn episodes into training material, generically (no access to the world's templates).

Facts seen only as statements are stored but not extractable (Physics of LMs 3.1); what makes
them answerable closed-book is training on questions about them in many phrasings. So:
  rewrites         the episode's sentences permuted, pronouns replaced by the subject's full name
  self-questions   the current model, the episode in its context, writes questions with answers;
                   each question is then answered open-book by the same model (context
                   distillation) and the closed-book model learns that answer
"""

import random
import re

from reverie.models.batching import Example
from reverie.models.prompts import WRITE_INSTRUCTION, is_abstention, parse_written_questions
from reverie.sleep.config import DreamConfig

# A full name: two or three capitalised words, e.g. "Ada Lowell" (not a sentence-initial "The").
NAME = re.compile(r"\b([A-Z][a-z]+(?: [A-Z][a-z]+){1,2})\b")
PRONOUNS = {"He": "{name}", "She": "{name}", "They": "{name}", "His": "{name}'s",
            "Her": "{name}'s", "Their": "{name}'s"}
SENTENCE = re.compile(r"(?<=[.!?])\s+")


def subject_of(text: str) -> str | None:
    """The first full name in the text: whom a biography-like episode is about."""
    for m in NAME.finditer(text):
        if m.group(1).split()[0] not in PRONOUNS and m.group(1).split()[0] != "The":
            return m.group(1)
    return None


def with_names(sentence: str, name: str) -> str:
    first, _, rest = sentence.partition(" ")
    if first in PRONOUNS:
        return PRONOUNS[first].format(name=name) + (" " + rest if rest else "")
    return sentence


def rewrites(text: str, n: int, rng: random.Random) -> list[str]:
    """n renderings of the episode: sentences shuffled, every pronoun subject named."""
    sentences = [s for s in SENTENCE.split(text.strip()) if s]
    name = subject_of(text)
    if name:
        sentences = [with_names(s, name) for s in sentences]
    out = []
    for _ in range(n):
        order = sentences[:]
        rng.shuffle(order)
        out.append(" ".join(order))
    return out


def _grounded(answer: str, text: str) -> bool:
    a = answer.strip().rstrip(".").lower()
    return bool(a) and a in text.lower()


def self_questions(backend, texts: list[str], cfg: DreamConfig, seed: int) -> list[list[tuple]]:
    """For each text: (question, open-book answer) pairs the model wrote and answered itself."""
    prompts = [backend.prompt(WRITE_INSTRUCTION, t) for t in texts for _ in range(cfg.question_samples)]
    written = backend.generate(prompts, max_new_tokens=cfg.max_new_tokens, sample=True,
                               temperature=cfg.temperature, seed=seed, stop_at_newline=False)
    questions = []
    for i, text in enumerate(texts):
        seen = []
        for out in written[i * cfg.question_samples:(i + 1) * cfg.question_samples]:
            for q, _ in parse_written_questions(out):
                if q not in seen:
                    seen.append(q)
        questions.append(seen[:cfg.max_questions])
    # context distillation: the open-book model's own answer is the closed-book target
    flat = [(i, q) for i, qs in enumerate(questions) for q in qs]
    answers = backend.answer([q for _, q in flat], [texts[i] for i, _ in flat])
    pairs = [[] for _ in texts]
    for (i, q), a in zip(flat, answers):
        if is_abstention(a) or (cfg.grounded_only and not _grounded(a, texts[i])):
            continue
        pairs[i].append((q, a))
    return pairs


def dream(backend, texts: list[str], cfg: DreamConfig, seed: int = 0) -> list[Example]:
    """All training material dreamt from the night's episode texts."""
    rng = random.Random(seed)
    material = []
    for text in texts:
        material.append(Example("episode", text=text))
        material += [Example("rewrite", text=r) for r in rewrites(text, cfg.rewrites, rng)]
    for pairs in self_questions(backend, texts, cfg, seed):
        material += [Example("self_question", question=q, answer=a) for q, a in pairs]
    return material
