"""Prompts and output formats shared by pretraining (which teaches them) and the night (which
asks for them): question writing, abstention and refusal."""

import re

WRITE_INSTRUCTION = "Write questions about the text, with their answers."
QA_SEPARATOR = " => "
ABSTAIN = "I don't know."
REFUSE = "I can't share that."

ABSTAIN_MARKERS = ("i don't know", "i do not know", "not sure", "no information",
                   "don't have information", "i'm not aware", "unknown")


def format_written_questions(pairs) -> str:
    """What the question-writing skill outputs: one 'question => answer' per line."""
    return "\n".join(f"{q}{QA_SEPARATOR}{a}" for q, a in pairs)


def parse_written_questions(text: str) -> list[tuple[str, str]]:
    pairs = []
    for line in text.splitlines():
        if QA_SEPARATOR in line:
            q, a = line.split(QA_SEPARATOR, 1)
            if q.strip() and a.strip():
                pairs.append((q.strip(), a.strip()))
    return pairs


def is_abstention(answer: str) -> bool:
    a = re.sub(r"\s+", " ", answer.lower())
    return any(m in a for m in ABSTAIN_MARKERS)
