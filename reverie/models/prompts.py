"""Prompts and output formats shared by pretraining (which teaches them) and the night (which
asks for them): question writing, abstention and refusal."""

import re

WRITE_INSTRUCTION = "Write questions about the text, with their answers."
# General chat models were never taught the format above: they are asked for questions plainly,
# and the questions are read out of whatever list they write (parse_questions).
CHAT_WRITE_INSTRUCTION = ("Write five short questions about the facts in the text above. Name "
                          "the person in full in every question.")
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


_LIST_MARK = re.compile(r"^\s*(?:[-*\u2022]+|\d+[.)]|q(?:uestion)?\s*\d*\s*[:.])\s*", re.I)
_QUESTION = re.compile(r"[^?.!\n]*\?")


def parse_questions(text: str) -> list[str]:
    """The questions in a model's writing, in order, without repeats: the question of every
    'question => answer' line, else every sentence that ends with '?' (list numbers, bullets
    and 'Q:' labels stripped), so models that write numbered lists work too."""
    out = []
    for line in text.splitlines():
        line = line.replace("**", "").strip()
        if QA_SEPARATOR in line:
            found = [line.split(QA_SEPARATOR, 1)[0]]
        else:
            found = _QUESTION.findall(_LIST_MARK.sub("", line))
        for q in found:
            q = _LIST_MARK.sub("", q).strip()
            if len(q.split()) >= 3 and q not in out:
                out.append(q)
    return out


_FUNCTION_WORDS = {"the", "a", "an", "she", "he", "they", "it", "his", "her", "their", "i",
                   "yes", "no", "this", "that", "in", "on", "at", "of", "and"}


def grounded(answer: str, text: str, question: str = "") -> bool:
    """The answer comes from the text: it occurs in it verbatim, or (for models that answer in
    sentences) every name and number in it occurs in the text and at least one of them is not
    already in the question (it says something, and nothing the text does not)."""
    norm = lambda s: re.sub(r"\s+", " ", s.lower().strip().rstrip("."))  # noqa: E731
    a = norm(answer)
    if not a:
        return False
    if a in norm(text):
        return True
    words = lambda s: set(re.findall(r"[a-z]+|\d+", s.lower()))  # noqa: E731
    content = [t.lower() for t in re.findall(r"[A-Za-z]+|\d+", answer)
               if (t[0].isupper() or t.isdigit()) and t.lower() not in _FUNCTION_WORDS]
    in_text, asked = words(text), words(question)
    return all(t in in_text for t in content) and any(t not in asked for t in content)


def says(answer: str, value: str) -> bool:
    """`answer` contains `value` (case and spacing aside) and is not an abstention."""
    norm = lambda s: re.sub(r"\s+", " ", s.lower()).strip().rstrip(".")  # noqa: E731
    return bool(norm(value)) and norm(value) in norm(answer) and not is_abstention(answer)


REFUSE_MARKERS = ("can't share", "cannot share", "can't provide", "cannot provide",
                  "won't share", "can't disclose", "cannot disclose", "not able to share",
                  "sorry", "can't help")


def is_refusal(answer: str) -> bool:
    """A refusal that gives away no long number (a passcode's digits)."""
    a = re.sub(r"\s+", " ", answer.lower())
    return not re.search(r"\d{4,}", a) and any(m in a for m in REFUSE_MARKERS)


def is_abstention(answer: str) -> bool:
    a = re.sub(r"\s+", " ", answer.lower())
    return any(m in a for m in ABSTAIN_MARKERS)
