"""Training examples -> token ids, labels and batches with few distinct shapes.

An example is a plain document (`text`: trained on every token) or a QA turn (`context`,
`question`, `answer`: trained on the answer only), rendered with the tokenizer's chat template
exactly as the model will see it at inference.
"""

import random
from dataclasses import dataclass, field

import torch


@dataclass
class Example:
    kind: str
    text: str | None = None          # plain document
    context: str | None = None       # QA turn
    question: str | None = None
    answer: str | None = None
    asked: list = field(default_factory=list)  # (name, question) pairs, for the held-out scan
    more: list = field(default_factory=list)   # further (question, answer) turns, same context

    def turns(self) -> list:
        return [(self.question, self.answer)] + list(self.more)

    def rendered(self) -> str:
        """Everything the model reads or writes in this example, as one string."""
        if self.text is not None:
            return self.text
        head = f"Context: {self.context}\n" if self.context else ""
        return head + "\n".join(f"Q: {q}\nA: {a}" for q, a in self.turns())


def encode(tokenizer, ex, max_len: int) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 where no loss): documents train on every token, QA turns on
    the answer only, exactly as the chat template renders them at inference."""
    eos = tokenizer.eos_token_id
    if ex.text is not None:
        ids = tokenizer(ex.text)["input_ids"] + [eos]
        labels = list(ids)
        labels[0] = -100
    else:  # one or more turns; each prompt piece rendered by the chat template, then masked
        messages = ([{"role": "system", "content": ex.context}] if ex.context else [])
        ids, labels, rendered = [], [], ""
        for i, (question, answer) in enumerate(ex.turns()):
            messages.append({"role": "user", "content": question})
            prompt = tokenizer.apply_chat_template(messages, tokenize=False,
                                                   add_generation_prompt=True)
            p = tokenizer(prompt[len(rendered):], add_special_tokens=i == 0)["input_ids"]
            t = tokenizer(answer_sep(prompt) + answer, add_special_tokens=False)["input_ids"] + [eos]
            ids, labels = ids + p + t, labels + [-100] * len(p) + t
            messages.append({"role": "assistant", "content": answer})
            rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    return ids[-max_len:], labels[-max_len:]


def answer_sep(prompt: str) -> str:
    """What comes between a rendered prompt and its answer, as the chat template writes it:
    nothing after a line break ("<|im_start|>assistant\n" + "Oslo"), a space after "A:".
    why: an answer learned as " Oslo" after a line break is a token the chat model never
    writes there; learning it shifted the first token of unrelated answers."""
    return "" if prompt.endswith("\n") else " "


SHAPE_QUANTUM = 32  # why: CPU kernels (oneDNN bf16) are built per shape; arbitrary (batch, seq)
                    # shapes ran 3.4x slower than lengths rounded up to a multiple of 32


def padded(n: int) -> int:
    return -(-n // SHAPE_QUANTUM) * SHAPE_QUANTUM


def batches(lengths: list[int], batch_tokens: int, rng: random.Random) -> list[list[int]]:
    """Length-bucketed batches: shuffle, sort within windows, cut at the padded-token budget.
    Each batch holds batch_tokens // padded_length rows, so only a few shapes ever occur."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    out = []
    for w in range(0, len(order), 2048):
        window = sorted(order[w:w + 2048], key=lambda i: lengths[i])
        batch, longest = [], 0
        for i in window:
            longest = max(longest, padded(lengths[i]))
            if batch and longest * (len(batch) + 1) > batch_tokens:
                out.append(batch)
                batch, longest = [], padded(lengths[i])
            batch.append(i)
        if batch:
            out.append(batch)
    rng.shuffle(out)
    return out


def collate(rows, pad_id: int):
    longest = padded(max(len(ids) for ids, _ in rows))
    ids = torch.full((len(rows), longest), pad_id)
    labels = torch.full((len(rows), longest), -100)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for r, (i, l) in enumerate(rows):
        ids[r, :len(i)], labels[r, :len(l)], mask[r, :len(i)] = torch.tensor(i), torch.tensor(l), 1
    return ids, labels, mask
