"""The runtime of a scoped night's change: each night's trigger and deltas on a model, the hooks
that apply them, and their files beside a standard HF folder. Sleep's scope strategy
(reverie.sleep.strategies.scope) trains them; the backend loads and saves them.

A scoped layer uses a night's change (delta = after - before) only from the first token whose
input at the trigger's layer matches a mention of one of that night's subjects; text that names
none of them runs through the weights of before, exactly. Nights stack: each keeps its own
trigger and deltas.

On disk (reverie's loader reads it back): the standard folder's weights hold every night's
change, so plain transformers reads the model as trained, everywhere; `scope.json` and
`scope.safetensors` beside them hold each night's trigger and deltas.
"""

import copy
import functools
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers.cache_utils import Cache
from transformers.pytorch_utils import Conv1D

FILE, TENSORS = "scope.json", "scope.safetensors"


# where known families keep their decoder blocks (any other model: found by structure)
LAYER_PATHS = ("model.layers",          # Llama, Qwen2, Mistral, Gemma, Phi-3, SmolLM
               "transformer.h",         # GPT-2, GPT-J, Falcon, BLOOM, CodeGen
               "gpt_neox.layers",       # GPT-NeoX, Pythia
               "model.decoder.layers",  # OPT
               "transformer.blocks")    # MPT


def decoder_layers(model) -> torch.nn.ModuleList:
    """The decoder's blocks, in order: a known attribute path, or else the nn.ModuleList of
    one type of block that is as long as the config's layer count (or the longest; why: a
    mixture of experts keeps its experts in lists too, often longer than the decoder)."""
    for path in LAYER_PATHS:
        try:
            layers = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(layers, torch.nn.ModuleList) and len(layers):
            return layers
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m)
             and len({type(b) for b in m}) == 1]
    if not lists:
        raise ValueError(f"{type(model).__name__} has no list of decoder layers for the scope to "
                         f"read: use --strategy cls or cls-lora")
    depth = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    return max(lists, key=lambda m: (len(m) == depth, len(m)))


def is_projection(module) -> bool:
    """A weight the scope can keep a delta of: nn.Linear, or GPT-2's Conv1D."""
    return isinstance(module, (torch.nn.Linear, Conv1D))


def project(module, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """What `delta` (shaped like module.weight) adds to the module's output for input x: an
    nn.Linear weight is (out, in), y = x W^T; a Conv1D weight is (in, out), y = x W."""
    delta = delta.to(x.dtype)
    return x @ delta if isinstance(module, Conv1D) else F.linear(x, delta)


@dataclass
class Trigger:
    """Fires on a token whose input at `layer` matches one of `keys` above `threshold`."""
    layer: int
    mean: torch.Tensor       # (d,) of the model's own writing at the layer's input
    whiten: torch.Tensor     # (d, d)
    keys: torch.Tensor       # (n, d) whitened mentions, unit rows
    threshold: float

    def to(self, device) -> "Trigger":
        return Trigger(self.layer, self.mean.to(device), self.whiten.to(device),
                       self.keys.to(device), self.threshold)

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        """(batch, seq, d) -> (batch, seq): best whitened cosine against the keys."""
        z = F.normalize((hidden.float() - self.mean) @ self.whiten, dim=-1)
        return (z @ self.keys.T).max(-1).values


@dataclass
class Entry:
    """One night: its trigger, subjects and deltas (module name -> after - before)."""
    trigger: Trigger
    subjects: list
    deltas: dict = field(default_factory=dict)
    bases: dict = field(default_factory=dict)   # while the night trains: module -> before


@dataclass
class Call:
    """One entry's state in the forward pass under way on one thread."""
    mask: torch.Tensor | None = None             # (batch, seq): the change applies here
    carried: torch.Tensor | None = None          # (batch,) fired before, when decoding


class ScopeSet:
    """Every night's entry on one model, and the hooks that apply them. Kept on the model as a
    plain attribute, so copy.deepcopy(model) copies entries and hooks together.

    What a forward pass computes on the way (where each trigger fired) is kept per thread: the
    service answers requests and scores surprise on several threads over one model."""

    def __init__(self):
        self.entries: list[Entry] = []
        self.layers: set = set()
        self.modules: set = set()
        self._calls = threading.local()

    def __deepcopy__(self, memo):
        copied = ScopeSet.__new__(ScopeSet)
        memo[id(self)] = copied
        copied.entries = copy.deepcopy(self.entries, memo)
        copied.layers, copied.modules = set(self.layers), set(self.modules)
        copied._calls = threading.local()
        return copied

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_calls"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._calls = threading.local()

    def call(self, k: int) -> Call:
        """Entry k's state in this thread's forward pass."""
        calls = self._calls.__dict__.setdefault("entries", {})
        return calls.setdefault(k, Call())

    def add(self, model, entry: Entry):
        self.entries.append(entry)
        layers = decoder_layers(model)
        if entry.trigger.layer not in self.layers:
            layers[entry.trigger.layer].register_forward_pre_hook(
                functools.partial(self._trigger, entry.trigger.layer), with_kwargs=True)
            self.layers.add(entry.trigger.layer)
        for name in list(entry.deltas) + list(entry.bases):
            if name not in self.modules:
                model.get_submodule(name).register_forward_hook(
                    functools.partial(self._apply, name))
                self.modules.add(name)

    def _trigger(self, layer: int, module, args, kwargs):
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        # why by type: Llama passes the cache as `cache=`, GPT-NeoX as `layer_past=`, GPT-2
        # positionally
        cache = next((v for v in (*args[1:], *kwargs.values()) if isinstance(v, Cache)), None)
        fresh = cache is None or cache.get_seq_length(layer) == 0
        for k, e in enumerate(self.entries):
            if e.trigger.layer != layer:
                continue
            with torch.no_grad():
                fired = torch.cummax((e.trigger.score(hidden) > e.trigger.threshold).int(),
                                     1).values.bool()
            call = self.call(k)
            if not fresh and call.carried is not None and len(call.carried) == len(fired):
                fired = fired | call.carried[:, None]
            call.carried = fired[:, -1]
            call.mask = fired

    def _apply(self, name: str, module, args, out):
        x = args[0]
        for k, e in enumerate(self.entries):
            if name in e.bases:
                delta = module.weight - e.bases[name]
            elif name in e.deltas:
                delta = e.deltas[name]
            else:
                continue
            mask = self.call(k).mask
            if mask is None or mask.shape != x.shape[:-1]:
                raise RuntimeError(f"scope: no trigger ran before {name} (layer "
                                   f"{e.trigger.layer} runs first)")
            off = (~mask)[..., None].to(out.dtype)
            out = out - off * project(module, x, delta)
        return out


def scope_of(model) -> ScopeSet | None:
    return getattr(model, "_reverie_scope", None)


def add_entry(model, entry: Entry) -> None:
    scope = scope_of(model)
    if scope is None:
        scope = ScopeSet()
        model._reverie_scope = scope
    scope.add(model, entry)

# ------------------------------------------------------------------ on disk
def save(model, path) -> None:
    """Write the model's scope beside its standard folder (nothing when it has none)."""
    scope = scope_of(model)
    if scope is None or not scope.entries:
        return
    from safetensors.torch import save_file
    tensors, meta = {}, []
    for k, e in enumerate(scope.entries):
        if e.bases:
            raise ValueError("scope: a night is still training; finish it before saving")
        t = e.trigger
        tensors.update({f"{k}.mean": t.mean, f"{k}.whiten": t.whiten, f"{k}.keys": t.keys})
        tensors.update({f"{k}.delta.{n}": d.float().contiguous().cpu()
                        for n, d in e.deltas.items()})
        meta.append({"layer": t.layer, "threshold": t.threshold, "subjects": e.subjects,
                     "modules": sorted(e.deltas)})
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(Path(path) / TENSORS))
    (Path(path) / FILE).write_text(json.dumps({"version": 1, "entries": meta}, indent=1))


def load(model, path) -> None:
    """Put back the scope saved in `path`, if there is one."""
    path = Path(path)
    if not (path / FILE).is_file():
        return
    from safetensors.torch import load_file
    meta = json.loads((path / FILE).read_text())
    if not (path / TENSORS).is_file():
        raise ValueError(f"{str(path / FILE)!r} names deltas but {TENSORS} is missing: copy the "
                         f"whole folder")
    tensors = load_file(str(path / TENSORS))
    device = next(model.parameters()).device
    for k, m in enumerate(meta["entries"]):
        trigger = Trigger(m["layer"], tensors[f"{k}.mean"].to(device),
                          tensors[f"{k}.whiten"].to(device), tensors[f"{k}.keys"].to(device),
                          float(m["threshold"]))
        deltas = {n: tensors[f"{k}.delta.{n}"].to(device) for n in m["modules"]}
        add_entry(model, Entry(trigger, m["subjects"], deltas=deltas))
