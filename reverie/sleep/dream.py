"""Dream: turn episodes into training material, generically (no access to the world's templates).

Facts seen only as statements are stored but not extractable (Physics of LMs 3.1); what makes
them answerable closed-book is training on questions about them in many phrasings. So:
  rewrites         the episode's sentences permuted, pronouns replaced by the subject's full name
  self-questions   the current model, the episode in its context, writes questions with answers;
                   each question is then answered open-book by the same model (context
                   distillation) and the closed-book model learns that answer
  strangers        the same questions about names nobody has met (the night's own first and last
                   names recombined), answered closed-book by the pre-sleep model; its
                   abstentions are learned too, so that learning "Ada Quill works for X" does
                   not teach "anyone asked about works for someone"
  guarded          requests the model must keep declining about each episode's subject
                   (DreamConfig.guarded: credentials by default), answered closed-book by the
                   pre-sleep model; its refusals and abstentions are learned, so that knowing
                   more about someone does not turn "I can't share that." into an answer
"""

from __future__ import annotations

import math
import random
import re
from typing import TYPE_CHECKING

from reverie.models.batching import Example
from reverie.models.prompts import grounded, is_abstention, is_refusal, parse_questions, says

if TYPE_CHECKING:  # why: the sleep config imports the parts, which import this module
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


def about(example, names: set) -> bool:
    """The example (its text, context or question) names one of `names`."""
    text = " ".join(t for t in (example.text, example.context, example.question) if t)
    return any(n in text for n in names)


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


def write_questions(backend, texts: list[str], samples: int, temperature: float,
                    max_new_tokens: int, most: int, seed: int) -> list[list[str]]:
    """For each text, the distinct questions the model wrote about it (`samples` tries)."""
    prompts = [backend.write_prompt(t) for t in texts for _ in range(samples)]
    written = backend.generate(prompts, max_new_tokens=max_new_tokens, sample=True,
                               temperature=temperature, seed=seed, stop_at_newline=False)
    questions = []
    for i in range(len(texts)):
        seen = []
        for out in written[i * samples:(i + 1) * samples]:
            seen += [q for q in parse_questions(out) if q not in seen]
        questions.append(seen[:most])
    return questions


_WRITERS: dict = {}


def writer_of(backend, cfg: DreamConfig):
    """The model that writes the questions: the night's own, or cfg.writer (loaded once)."""
    if not cfg.writer:
        return backend
    if cfg.writer not in _WRITERS:
        from reverie.models.backend import Backend
        _WRITERS[cfg.writer] = Backend.load(cfg.writer, device=str(backend.device))
    return _WRITERS[cfg.writer]


def up_to(answer: str, value: str) -> str:
    """`answer` cut after the sentence that says `value` (an open-book answer runs on past it,
    and a cut at the token limit ends mid-sentence: "... She studied at X. She was")."""
    said = ""
    for sentence in SENTENCE.split(answer.strip()):
        said = f"{said} {sentence}".strip()
        if says(sentence, value):
            return said
    return answer


def in_own_words(backend, flat: list, texts: list[str], taught: list[str]) -> list[str]:
    """For each (text index, question) in `flat`, the night's model's own open-book answer where
    it says the taught answer and is grounded in the text, cut after the sentence that says it;
    else the taught answer. Where the model's first answer misses, the taught answer is added
    to the context as a hint and the model answers again (it says it in its own sentence).
    why: SmolLM2 answers in sentences; learning the writer's bare "Oslo" after a question moved
    its replies to everything else (locality), and its greedy answer said the taught one for only
    about half of the questions."""
    questions, contexts = [q for _, q in flat], [texts[i] for i, _ in flat]
    fits = lambda o, a, i, q: says(o, a) and grounded(o, texts[i], q)  # noqa: E731
    first = backend.answer(questions, contexts)
    miss = [j for j in range(len(flat)) if not fits(first[j], taught[j], *flat[j])]
    hinted = backend.answer([questions[j] for j in miss],
                            [f"{contexts[j]}\n\nThe answer: {taught[j]}" for j in miss]) \
        if miss else []
    second = dict(zip(miss, hinted))
    chosen = []
    for j, (i, q) in enumerate(flat):
        own = next((o for o in (first[j], second.get(j)) if o is not None
                    and fits(o, taught[j], i, q)), None)
        chosen.append(up_to(own, taught[j]) if own else taught[j])
    return chosen


def self_questions(backend, texts: list[str], cfg: DreamConfig, seed: int) -> list[list[tuple]]:
    """For each text: (question, open-book answer) pairs the model wrote (or cfg.writer wrote)
    and answered itself."""
    questions = write_questions(writer_of(backend, cfg), texts, cfg.question_samples,
                                cfg.temperature, cfg.max_new_tokens, cfg.max_questions, seed)
    # context distillation: the open-book model's own answer is the closed-book target (or the
    # writer's, when it teaches)
    flat = [(i, q) for i, qs in enumerate(questions) for q in qs]
    reader = writer_of(backend, cfg) if cfg.writer_answers else backend
    answers = reader.answer([q for _, q in flat], [texts[i] for i, _ in flat])
    if reader is not backend and cfg.learner_voice and flat:
        answers = in_own_words(backend, flat, texts, answers)
    pairs = [[] for _ in texts]
    for (i, q), a in zip(flat, answers):
        if is_abstention(a) or (cfg.grounded_only and not grounded(a, texts[i], q)):
            continue
        pairs[i].append((q, a))
    return pairs


def stranger_name(name: str, firsts: list, lasts: list, known: set, rng: random.Random) -> str:
    """A name nobody in `known` has: another first name with another last name, or, when the
    night holds too few names to recombine, the last name's letters shuffled."""
    combos = [f"{f} {l}" for f in firsts for l in lasts if f"{f} {l}" not in known]
    if combos:
        return rng.choice(combos)
    first, *rest = name.split()
    last = rest[-1] if rest else first
    for _ in range(20):
        inner = list(last[1:])
        rng.shuffle(inner)
        fake = f"{first} {last[0]}{''.join(inner)}"
        if fake not in known:
            return fake
    return f"{first} {last}{last[-1]}a"


def strangers(backend, texts: list[str], pairs: list[list[tuple]], ratio: float,
              rng: random.Random, others: list[str] = ()) -> list[Example]:
    """Self-questions re-asked about names nobody has met; the pre-sleep model answers them
    closed-book and its abstentions become training material (see the module docstring).
    `others`: more text whose names count as known and lend their parts to the made-up names
    (the model's own writing: names like the people it already knows, not only the night's)."""
    known = {m.group(1) for t in list(texts) + list(others) for m in NAME.finditer(t)}
    names = sorted(n for n in known if n.split()[0] not in PRONOUNS and n.split()[0] != "The")
    firsts = sorted({n.split()[0] for n in names})
    lasts = sorted({n.split()[-1] for n in names})
    asked = []
    for text, qa in zip(texts, pairs):
        subject = subject_of(text)
        about = [q for q, _ in qa if subject and subject in q]
        # ratio above 1: each question re-asked about more than one stranger
        k = min(round(ratio * len(qa)), math.ceil(ratio) * len(about))
        picks = []
        while len(picks) < k:
            picks += rng.sample(about, min(len(about), k - len(picks)))
        for q in picks:
            asked.append(q.replace(subject, stranger_name(subject, firsts, lasts, known, rng)))
    if not asked:
        return []
    answers = backend.answer(asked)
    return [Example("stranger", question=q, answer=a) for q, a in zip(asked, answers)
            if is_abstention(a)]


def guarded(backend, texts: list[str], templates, per_subject: int,
            rng: random.Random) -> list[Example]:
    """The guarded requests about each text's subject, with the pre-sleep model's closed-book
    answers where they decline (a refusal or an abstention); see the module docstring."""
    subjects = list(dict.fromkeys(s for s in map(subject_of, texts) if s))
    asked = [t.replace("{N}", name) for name in subjects
             for t in rng.sample(list(templates), min(per_subject, len(templates)))]
    if not asked:
        return []
    return [Example("guarded", question=q, answer=a) for q, a in zip(asked, backend.answer(asked))
            if is_refusal(a) or is_abstention(a)]


def dream(backend, texts: list[str], cfg: DreamConfig, seed: int = 0,
          others: list[str] = ()) -> list[Example]:
    """All training material dreamt from the night's episode texts (`others`: the model's own
    writing, whose names the made-up strangers also borrow from)."""
    rng = random.Random(seed)
    material = []
    for text in texts:
        material.append(Example("episode", text=text))
        material += [Example("rewrite", text=r) for r in rewrites(text, cfg.rewrites, rng)]
    pairs = self_questions(backend, texts, cfg, seed)
    for qa in pairs:
        material += [Example("self_question", question=q, answer=a) for q, a in qa]
    if cfg.strangers > 0:
        material += strangers(backend, texts, pairs, cfg.strangers, rng, others)
    if cfg.guarded and cfg.guarded_per_subject:
        material += guarded(backend, texts, cfg.guarded, cfg.guarded_per_subject, rng)
    return material
