"""Model backend: plain-transformers round trip, tokenizer, generation, NLL."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from reverie.errors import ReverieError
from reverie.models.backend import Backend, resolve

TEXTS = ["Ada Lowell was born in Paris.", "Q: Where does Otto Vance work?\nA:",
         "Ünïcödé, emoji 🙂 and tabs\tsurvive."]


def _logits(model, tokenizer, texts):
    tokenizer.padding_side = "right"
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**enc).logits


def test_world_model_round_trips_through_plain_transformers(world_backend, tmp_path):
    world_backend.save(tmp_path / "copy")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "copy").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "copy")
    assert model.config.architectures == ["LlamaForCausalLM"]
    assert world_backend.n_params <= 20_000_000
    ours = _logits(world_backend.model, world_backend.tokenizer, TEXTS)
    theirs = _logits(model, tokenizer, TEXTS)
    assert torch.equal(ours, theirs)


def test_tokenizer_round_trips_any_text(world_backend):
    tok = world_backend.tokenizer
    for text in TEXTS + ["  leading spaces", "x" * 500, "digits 0123456789"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    assert tok("hi")["input_ids"][0] == tok.bos_token_id
    assert len(tok) == 4096


def test_chat_template_renders_context_and_question(world_backend):
    prompt = world_backend.prompt("Where was Ada born?", "Ada was born in Oslo.")
    assert prompt == "Context: Ada was born in Oslo.\nQ: Where was Ada born?\nA:"
    assert world_backend.prompt("Hi?") == "Q: Hi?\nA:"


def test_greedy_is_deterministic_and_batched_equals_single(world_backend):
    prompts = [world_backend.prompt(q) for q in ("When was Ada Lowell born?",
                                                  "Who employs Otto Vance? Please.")]
    batched = world_backend.generate(prompts)
    single = [world_backend.generate([p])[0] for p in prompts]
    assert batched == single == world_backend.generate(prompts)
    sampled = world_backend.generate(prompts, sample=True, temperature=1.5, seed=7)
    assert sampled == world_backend.generate(prompts, sample=True, temperature=1.5, seed=7)


def test_token_nll_has_one_value_per_predicted_token(world_backend, world):
    p = world.base[0]
    known = f"{p.name} was born in {p.birth_city}."
    texts = [known, known + " " + known]
    nll = world_backend.token_nll(texts)
    n_tokens = [len(world_backend.tokenizer(t)["input_ids"]) for t in texts]
    assert [len(x) for x in nll] == [n - 1 for n in n_tokens]
    assert torch.allclose(nll[0], nll[1][:len(nll[0])], atol=1e-4)  # padding does not leak
    wrong = f"{p.name} was born in {'Oslo' if p.birth_city != 'Oslo' else 'Rome'}."
    assert world_backend.token_nll([wrong])[0].sum() > nll[0].sum()  # it knows the fact


def test_resolve_rejects_missing_and_non_causal_directories(tmp_path):
    with pytest.raises(ReverieError, match="does not exist"):
        resolve(str(tmp_path / "nope"))
    with pytest.raises(ReverieError, match="no config.json"):
        resolve(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(ReverieError, match="holds no causal LM"):
        resolve(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ReverieError, match="not valid JSON"):
        resolve(str(tmp_path))


@pytest.mark.slow
def test_smollm2_converts_and_round_trips(tmp_path):
    backend = Backend.load("smollm2", device="cpu")
    assert 134_000_000 < backend.n_params < 136_000_000
    backend.save(tmp_path / "copy")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "copy").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "copy")
    ours = _logits(backend.model, backend.tokenizer, TEXTS[:2])
    assert torch.equal(ours, _logits(model, tokenizer, TEXTS[:2]))
    answer = backend.answer(["What is the capital of France?"])[0]
    assert "Paris" in answer


def test_questions_are_read_from_any_list_a_model_writes():
    from reverie.models.prompts import parse_questions
    written = ("1. What is the occupation of Ada Quill?\n- Where was Ada Quill born?\n"
               "**Q3:** Who employs Ada Quill? **A:** Acme\nWhat did Ada Quill study? => physics\n"
               "Where was Ada Quill born? Which city? Sure.\nThe end.")
    assert parse_questions(written) == ["What is the occupation of Ada Quill?",
                                        "Where was Ada Quill born?", "Who employs Ada Quill?",
                                        "What did Ada Quill study?"]
    assert parse_questions("no questions here.") == []


def test_grounded_answers_come_from_the_text():
    from reverie.models.prompts import grounded
    text = "Ada Quill was born in Oslo. She works for Acme Robotics in Lisbon."
    assert grounded("Oslo.", text) and grounded("She works for Acme Robotics.", text)
    q = "Where does Ada Quill work?"
    assert grounded("Ada Quill is currently working at Acme Robotics in Lisbon.", text, q)
    assert not grounded("Ada Quill's office city: Oslo, Norway", text, q)  # Norway: made up
    assert not grounded("Ada Quill is a brilliant engineer.", text, q)  # nothing new
    assert not grounded("in the United States", text) and not grounded(" ", text)
