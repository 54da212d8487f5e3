"""Rehearsal: what is mixed into a night so the old survives.

  reservoir          a bounded sample of earlier nights' material (reservoir sampling, so every
                     night's material has an equal chance to stay)
  generative replay  what the pre-sleep model writes itself, in two kinds:
                       documents   sampled from the start token (for the world model,
                                   biographies of people it knows)
                       questions   the model writes a question about one of those documents
                                   (its question-writing skill, as in the dream) and answers it
                                   greedily closed-book: the QA, abstentions and refusals it
                                   would give. (Sampling the question after the chat template's
                                   user opening, Magpie-style, fails on models never trained on
                                   user turns, like the world model.)
                     learned as text (replay) or through a KL to the pre-sleep model (distill)
why the questions: on the world model documents alone left closed-book answers of base people
unprotected (a night of 8 new people kept 0.67 of them); QA is where that knowledge is used.
"""

import random

from reverie.models.batching import Example


def generative_samples(backend, n: int, max_new_tokens: int, seed: int,
                       question_share: float = 0.5, open_share: float = 0.0) -> list[Example]:
    """n examples the pre-sleep model wrote: documents, and self-asked, self-answered
    questions."""
    if n == 0:
        return []
    tok = backend.tokenizer
    start = "" if tok("")["input_ids"] else (tok.bos_token or tok.eos_token)
    texts = [t for t in backend.generate([start] * n, max_new_tokens=max_new_tokens, sample=True,
                                         temperature=1.0, seed=seed, stop_at_newline=False)
             if t.strip()]
    n_questions = round(n * question_share)
    documents = texts[:len(texts) - n_questions]
    asked = self_asked(backend, texts[len(documents):], seed, open_share)
    return [Example("generative", text=t) for t in documents] + asked


def self_asked(backend, documents: list[str], seed: int, open_share: float = 0.0) -> list[Example]:
    """One question the model writes about each of its own documents, answered by the model
    closed-book: the target is what it knows, not what the sampled document says. A share
    `open_share` of them is also answered open-book, the document in the context: reading
    what is in front of it is trained behaviour a night must keep too."""
    from reverie.sleep.dream import write_questions
    written = write_questions(backend, documents, 1, 1.0, 64, 4, seed + 1)
    rng = random.Random(seed)
    asked = {}
    for doc, qs in zip(documents, written):
        if qs:
            asked.setdefault(rng.choice(qs), doc)
    questions = list(asked)
    answers = backend.answer(questions)
    out = [Example("generative_qa", question=q, answer=a)
           for q, a in zip(questions, answers) if a.strip()]
    reading = questions[:round(open_share * len(questions))]
    if reading:
        contexts = [asked[q] for q in reading]
        read = backend.answer(reading, contexts)
        out += [Example("generative_open", context=c, question=q, answer=a)
                for q, c, a in zip(reading, contexts, read) if a.strip()]
    return out


def as_read(backend, examples: list[Example]) -> list[str]:
    """Each example as the model reads it: a document as is, a QA turn in its chat prompt with the
    answer after it (the text whose activations the scope's trigger is fitted against)."""
    return [backend.prompt(ex.question, ex.context) + ex.answer if ex.question else ex.text
            for ex in examples]


def update_reservoir(reservoir: list, seen: int, new: list, size: int,
                     rng: random.Random) -> int:
    """Algorithm R over the stream of material; returns the new count of items seen."""
    for item in new:
        seen += 1
        if len(reservoir) < size:
            reservoir.append(item)
        else:
            j = rng.randrange(seen)
            if j < size:
                reservoir[j] = item
    return seen
