"""The scope: a night's change read only where tonight's subjects are named (tiny model)."""

import pytest
import torch

from reverie.models.backend import Backend
from reverie.sleep.night import run_night
from reverie.sleep.strategies.base import SleepState
from reverie.sleep.strategies.scope import ScopeConfig
from tiny import TEXTS, Ep, tiny_cfg


def scope_night(tiny, texts=TEXTS[:1], state=None, backend=None, epochs=6, lr=3e-3):
    cfg = tiny_cfg("cls-scope", scope=ScopeConfig(lr=lr, epochs=epochs))
    cfg.rehearsal.generative_samples = 24  # the own writing the trigger is fitted against
    return run_night(backend or tiny, [Ep(i, t) for i, t in enumerate(texts)], cfg,
                     state or SleepState())


def test_the_scope_learns_about_tonights_subject_and_leaves_other_text_exactly(tiny):
    from reverie.models.scope import scope_of
    result = scope_night(tiny)
    report = result.report["scope"]
    assert report["subjects"] == ["Ada Lowell"] and report["mentions"] > 0
    assert report["mentions_low"] > report["threshold"] > report["own_best"]
    assert report["separable"] is True
    now = result.candidate
    before = tiny.token_nll([TEXTS[0]])[0].mean().item()
    assert now.token_nll([TEXTS[0]])[0].mean().item() < before - 0.2
    tok = tiny.tokenizer
    for other in (TEXTS[1], TEXTS[2], "Otto Vance was born in Rome. The coffee is fine."):
        ids = tok([other], return_tensors="pt")["input_ids"]
        assert torch.allclose(now.model(ids).logits, tiny.model(ids).logits, atol=1e-5), other
    # the weights did change, inside the scope's layers only; the serving model has no scope
    changed = {n for (n, p), (_, q) in zip(now.model.named_parameters(),
                                           tiny.model.named_parameters()) if not torch.equal(p, q)}
    assert changed and all(n.startswith("model.layers.1.mlp.") for n in changed), changed
    assert scope_of(tiny.model) is None and len(scope_of(now.model).entries) == 1


def test_the_scope_is_saved_beside_a_standard_folder_and_read_back(tiny, tmp_path):
    from transformers import AutoModelForCausalLM
    now = scope_night(tiny).candidate
    now.save(tmp_path)
    assert (tmp_path / "scope.json").is_file() and (tmp_path / "scope.safetensors").is_file()
    loaded = Backend.load(str(tmp_path))
    tok = tiny.tokenizer
    for text in (TEXTS[0], TEXTS[2]):
        ids = tok([text], return_tensors="pt")["input_ids"]
        assert torch.allclose(loaded.model(ids).logits, now.model(ids).logits, atol=1e-5)
    # plain transformers reads the weights as trained, everywhere (no scope)
    plain = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = tok([TEXTS[2]], return_tensors="pt")["input_ids"]
    assert not torch.allclose(plain(ids).logits, tiny.model(ids).logits, atol=1e-4)
    (tmp_path / "scope.safetensors").unlink()
    with pytest.raises(Exception, match="scope.safetensors is missing"):
        Backend.load(str(tmp_path))


def test_the_scope_holds_while_decoding_with_the_cache(tiny):
    now = scope_night(tiny, epochs=12, lr=1e-2).candidate
    tok = now.tokenizer
    for prompt in ("Ada Lowell works for", "The coffee machine"):
        ids = tok([prompt], return_tensors="pt")["input_ids"]
        out = now.model.generate(ids, max_new_tokens=8, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        full = now.model(out).logits[0, ids.shape[1] - 1:-1].argmax(-1)
        assert torch.equal(full, out[0, ids.shape[1]:]), prompt
    # a batch with left padding decodes each row as it would alone
    now.tokenizer.padding_side = "left"
    prompts = ["Ada Lowell works for", "The coffee machine", "Who is Ada Lowell? She"]
    both = now.generate(prompts, max_new_tokens=6)
    assert both == [now.generate([p], max_new_tokens=6)[0] for p in prompts]
    # and the service's own decoder (left-padded batch, its cache) writes the same
    from reverie.serve.engine import Sequence, decode
    from reverie.serve.tenants import Serving
    serving = Serving.of(now, None)
    seqs = [Sequence(prompt_ids=serving.encoder(p)["input_ids"], max_tokens=6, index=i,
                     sink=lambda *e: None) for i, p in enumerate(prompts)]
    decode(serving, seqs)
    assert [s.sent for s in seqs] == both
    # what it writes after Ada's name is tonight's; after the coffee machine, as before
    before = tiny.generate(prompts, max_new_tokens=6)
    assert both[0] != before[0] and both[2] != before[2] and both[1] == before[1]


def test_nights_under_the_scope_stack_and_each_keeps_its_own(tiny):
    from reverie.models.scope import scope_of
    state = SleepState()
    first = scope_night(tiny, TEXTS[:1], state).candidate
    tok = tiny.tokenizer
    ada = tok([TEXTS[0]], return_tensors="pt")["input_ids"]
    ada_logits = first.model(ada).logits
    second = scope_night(tiny, TEXTS[1:2], state, backend=first).candidate
    assert len(scope_of(second.model).entries) == 2 and len(scope_of(first.model).entries) == 1
    # Ada's text reads night 1's weights; night 2 learned Otto; unrelated text is as before
    assert torch.allclose(second.model(ada).logits, ada_logits, atol=1e-4)
    assert torch.allclose(first.model(ada).logits, ada_logits)
    otto = TEXTS[1]
    assert (second.token_nll([otto])[0].mean().item()
            < first.token_nll([otto])[0].mean().item() - 0.2)
    ids = tok([TEXTS[2]], return_tensors="pt")["input_ids"]
    assert torch.allclose(second.model(ids).logits, tiny.model(ids).logits, atol=1e-5)


def test_scope_sets_the_rate_and_passes_of_its_night(tiny):
    cfg = tiny_cfg("cls-scope", scope=ScopeConfig(lr=3e-3, epochs=2))
    two = run_night(tiny, [Ep(0, TEXTS[0])], cfg, SleepState()).report
    cfg.scope.epochs = 6
    six = run_night(tiny, [Ep(0, TEXTS[0])], cfg, SleepState()).report
    assert six["steps"] == 3 * two["steps"] and two["steps"] > 0
    assert (two["lr"], two["epochs"], six["epochs"]) == (3e-3, 2, 6)
    with pytest.raises(ValueError, match="epochs must be > 0"):
        ScopeConfig(epochs=0)
    with pytest.raises(ValueError, match="layer must be in"):
        ScopeConfig(layer=1.5)
    # the loop's own rate and passes are the scope's to set: setting them is a mistake
    with pytest.raises(ValueError, match="train.lr is not used by strategy cls-scope.*scope.lr"):
        tiny_cfg("cls-scope", train={"lr": 1e-3})


def test_a_scoped_night_commits_as_a_snapshot_and_serves_back_with_its_scope(tiny, tmp_path):
    from reverie import snapshots
    from reverie.models.scope import scope_of
    now = scope_night(tiny).candidate
    sid = snapshots.commit(tmp_path, now, {"parent": None})
    assert (snapshots.root(tmp_path) / sid / "scope.safetensors").is_file()
    back = snapshots.load(tmp_path, sid)
    assert len(scope_of(back.model).entries) == 1
    tok = tiny.tokenizer
    for text in (TEXTS[0], TEXTS[2]):
        ids = tok([text], return_tensors="pt")["input_ids"]
        assert torch.allclose(back.model(ids).logits, now.model(ids).logits, atol=1e-5)


def test_each_thread_reads_its_own_forward_pass_through_the_scope(tiny):
    """The service answers on several threads over one model: a forward pass on one thread
    must not apply the change where another thread's trigger fired."""
    import threading
    now = scope_night(tiny).candidate
    tok = tiny.tokenizer
    ada = tok([TEXTS[0]], return_tensors="pt")["input_ids"]
    other = tok(["The coffee machine is broken again. " * 3], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        alone = now.model(ada).logits
    # the first thread stops after the trigger layer until the second has run a whole pass
    layers = now.model.model.layers
    paused, resumed = threading.Event(), threading.Event()
    first = {}

    def hold(module, args):
        if threading.current_thread().name == "first" and not paused.is_set():
            paused.set()
            resumed.wait(30)
    handle = layers[-1].register_forward_pre_hook(hold)

    def run_first():
        with torch.no_grad():
            first["logits"] = now.model(ada).logits
    t = threading.Thread(target=run_first, name="first")
    t.start()
    assert paused.wait(30)
    with torch.no_grad():
        now.model(other)
    resumed.set()
    t.join(30)
    handle.remove()
    assert torch.allclose(first["logits"], alone, atol=1e-6)
    # and a copy of the model (the night trains one) carries no thread's state along
    import copy
    clone = copy.deepcopy(now.model)
    with torch.no_grad():
        assert torch.allclose(clone(ada).logits, alone, atol=1e-6)
