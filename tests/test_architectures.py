"""The night, the scope, saving and the service on four causal LM families (Llama, Qwen2, GPT-2,
GPT-NeoX), each a tiny random-weight model built from its config (no download)."""

import pytest
import torch

from reverie.models.backend import Backend
from reverie.models.world_model import train_tokenizer
from reverie.sleep.night import run_night
from reverie.sleep.strategies.base import SleepState
from reverie.sleep.strategies.lora import LoRAConfig
from reverie.sleep.strategies.scope import ScopeConfig
from tiny import TEXTS, Ep, tiny_cfg

OTHERS = (TEXTS[1], TEXTS[2], "Otto Vance was born in Rome. The coffee is fine.")
PROMPTS = ["Ada Lowell works for", "The coffee machine", "Who is Ada Lowell? She"]


def config_of(family: str, tok):
    """hidden 64, 2 layers, 4 heads, the tokenizer's vocabulary and special tokens."""
    import transformers as tf
    ids = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
               pad_token_id=tok.pad_token_id)
    if family == "gpt2":
        return tf.GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=512, **ids)
    common = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=128, max_position_embeddings=512, **ids)
    if family == "gpt_neox":
        return tf.GPTNeoXConfig(**common)
    kind = {"llama": tf.LlamaConfig, "qwen2": tf.Qwen2Config}[family]
    return kind(num_key_value_heads=4, tie_word_embeddings=True, **common)


FAMILIES = ("llama", "qwen2", "gpt2", "gpt_neox")
_built: dict = {}


def build(family: str) -> Backend:
    """The family's tiny model, built once per test run (a night never changes it)."""
    if family not in _built:
        from transformers import AutoModelForCausalLM
        torch.manual_seed(0)
        tok = train_tokenizer(TEXTS * 20 + ["Q: A: Context: => ?"], 300)
        torch.manual_seed(0)
        _built[family] = Backend(AutoModelForCausalLM.from_config(config_of(family, tok)), tok)
    return _built[family]


_nights: dict = {}


def night(family: str, strategy: str):
    """A night on the episode TEXTS[0] (run once per family and strategy)."""
    if (family, strategy) not in _nights:
        cfg = {"cls": lambda: tiny_cfg("cls", train={"epochs": 6, "lr": 3e-3}),
               "cls-scope": lambda: tiny_cfg("cls-scope", scope=ScopeConfig(lr=3e-3, epochs=6)),
               "cls-lora": lambda: tiny_cfg("cls-lora", train={"epochs": 6},
                                            lora=LoRAConfig(lr=1e-2))}[strategy]()
        cfg.rehearsal.generative_samples = 24  # the own writing the trigger is fitted against
        _nights[family, strategy] = run_night(build(family), [Ep(0, TEXTS[0])], cfg,
                                              SleepState())
    return _nights[family, strategy]


def logits(backend, text):
    ids = backend.tokenizer([text], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return backend.model(ids).logits


@pytest.mark.parametrize("strategy", ["cls", "cls-scope", "cls-lora"])
@pytest.mark.parametrize("family", FAMILIES)
def test_a_night_lowers_the_loss_on_its_episode(family, strategy):
    base = build(family)
    before = base.token_nll([TEXTS[0]])[0].mean().item()
    result = night(family, strategy)
    after = result.candidate.token_nll([TEXTS[0]])[0].mean().item()
    assert after < before - 0.3, (family, strategy, before, after)   # measured: 0.39-0.74
    assert result.report["strategy"] == strategy and result.report["train_tokens"] > 0
    assert base.token_nll([TEXTS[0]])[0].mean().item() == before   # the base is untouched


@pytest.mark.parametrize("family", FAMILIES)
def test_the_scope_changes_the_episode_and_leaves_other_text_exactly(family):
    base, result = build(family), night(family, "cls-scope")
    report = result.report["scope"]
    assert report["subjects"] == ["Ada Lowell"] and report["separable"] is True, report
    now = result.candidate
    assert not torch.allclose(logits(now, TEXTS[0]), logits(base, TEXTS[0]), atol=1e-3)
    for other in OTHERS:
        assert torch.allclose(logits(now, other), logits(base, other), atol=1e-5), other
    # the weights that changed are the MLP's, in the scope's layer only
    changed = [n for (n, p), (_, q) in zip(now.model.named_parameters(),
                                           base.model.named_parameters()) if not torch.equal(p, q)]
    assert changed and all(".1.mlp." in n for n in changed), changed


@pytest.mark.parametrize("family", FAMILIES)
def test_a_scoped_candidate_saves_loads_and_decodes_with_the_cache(family, tmp_path):
    from transformers import AutoModelForCausalLM
    now = night(family, "cls-scope").candidate
    now.save(tmp_path)
    loaded = Backend.load(str(tmp_path), device="cpu")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path)
    for text in (TEXTS[0], TEXTS[2]):
        assert torch.allclose(logits(loaded, text), logits(now, text), atol=1e-5), text
    # plain transformers reads the weights as trained (every night's change, everywhere)
    trained = now.model.state_dict()
    assert all(torch.equal(p, trained[n]) for n, p in plain.state_dict().items())
    ids = now.tokenizer([TEXTS[2]], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert not torch.allclose(plain(ids).logits, logits(build(family), TEXTS[2]), atol=1e-4)
    # generate with the cache writes the greedy argmax of the full forward
    tok = loaded.tokenizer
    for prompt in PROMPTS[:2]:
        ids = tok([prompt], return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = loaded.model.generate(ids, max_new_tokens=6, do_sample=False,
                                        pad_token_id=tok.pad_token_id)
            full = loaded.model(out).logits[0, ids.shape[1] - 1:-1].argmax(-1)
        assert torch.equal(full, out[0, ids.shape[1]:]), prompt
    # a left-padded batch decodes each row as it would alone; the service's decoder agrees
    both = loaded.generate(PROMPTS, max_new_tokens=6, stop_at_newline=False)
    assert both == [loaded.generate([p], max_new_tokens=6, stop_at_newline=False)[0]
                    for p in PROMPTS]
    from reverie.serve.engine import Sequence, decode
    from reverie.serve.tenants import Serving
    serving = Serving.of(loaded, None)
    seqs = [Sequence(prompt_ids=serving.encoder(p)["input_ids"], max_tokens=6, index=i,
                     stop_at_newline=False, sink=lambda *e: None) for i, p in enumerate(PROMPTS)]
    decode(serving, seqs)
    assert [s.sent for s in seqs] == both


@pytest.mark.parametrize("family", FAMILIES)
def test_the_decoder_layers_and_projections_are_found_by_structure(family):
    from reverie.models.scope import decoder_layers
    from reverie.sleep.strategies.lora import targets
    model = build(family).model
    assert len(decoder_layers(model)) == 2
    expected = {"llama": ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj",
                          "v_proj"],
                "qwen2": ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj",
                          "v_proj"],
                "gpt2": ["c_attn", "c_fc", "c_proj"],
                "gpt_neox": ["dense", "dense_4h_to_h", "dense_h_to_4h", "query_key_value"]}
    assert sorted(targets(model)) == expected[family]


def test_a_model_without_decoder_layers_is_a_clear_error():
    from reverie.models.scope import decoder_layers
    from reverie.sleep.strategies.focus import mlp_parameters
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="Sequential has no list of decoder layers.*cls-lora"):
        decoder_layers(model)
    with pytest.raises(ValueError, match="Sequential has no MLP block.*train.trainable"):
        mlp_parameters(model)


def test_lora_on_a_model_mixing_linear_and_conv1d_is_a_clear_error():
    import copy
    from reverie.sleep.strategies.lora import lora_config
    model = copy.deepcopy(build("gpt2").model)
    model.transformer.h[0].mlp.c_fc = torch.nn.Linear(64, 256)
    with pytest.raises(ValueError, match="GPT2LMHeadModel mixes nn.Linear and Conv1D.*cls$"):
        lora_config(LoRAConfig(), model)
    assert lora_config(LoRAConfig(), build("gpt2").model).fan_in_fan_out is True


def test_a_tokenizer_without_pad_or_eos_is_a_clear_error():
    import copy
    base = build("gpt_neox")
    tok = copy.deepcopy(base.tokenizer)
    tok.pad_token = tok.eos_token = None
    with pytest.raises(ValueError, match="GPTNeoXForCausalLM has neither a pad nor an end-of"):
        Backend(base.model, tok)
