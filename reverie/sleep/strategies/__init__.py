"""Protection strategies, chosen by name. Each is a tuple of small parts on the one loop."""

from reverie.sleep.strategies.distill import Distill
from reverie.sleep.strategies.edit import Edit
from reverie.sleep.strategies.ewc import EWC
from reverie.sleep.strategies.focus import Focus
from reverie.sleep.strategies.grow import Grow
from reverie.sleep.strategies.lora import LoRA
from reverie.sleep.strategies.nullspace import NullSpace
from reverie.sleep.strategies.progressive import Progressive
from reverie.sleep.strategies.replay import Replay
from reverie.sleep.strategies.scope import Scope

STRATEGIES = {
    "naive": (),                      # plain fine-tuning on the night's material
    "replay": (Replay,),
    "ewc": (EWC,),
    "lora": (LoRA,),
    "distill": (Distill,),
    "progressive": (Progressive,),
    "nullspace": (NullSpace,),        # MLP down-projections, steps projected off generic keys
    "edit": (Edit,),
    "grow": (Grow, Replay),           # new MLP neurons, taught silence on the model's own writing
    "scope": (Focus, Scope),          # MLPs trained; the change applies to tonight's subjects only
    "cls": (Focus, Replay, Distill),  # the default: what measures best (see the bench)
}


LORA_ABOVE = 50_000_000  # parameters: cls trains adapters on models this large (cls_lora=auto)
SCOPE_ABOVE = 50_000_000  # parameters: cls keeps its change in scope on these (scope=auto)


def build_parts(name: str, cls_lora: str = "no", n_params: int = 0, scope: str = "no") -> list:
    """The strategy's parts. cls on a large model (or scope='yes') trains the MLPs under a scope
    (its change reads only where tonight's subjects are named: no replay or KL is needed outside
    it); with scope='no', cls on a large model (or cls_lora='yes') trains LoRA adapters under
    its replay and distillation: full fine-tuning of SmolLM2 on 2 cores is slow and moves every
    unrelated answer."""
    if name == "cls" and (scope == "yes" or (scope == "auto" and n_params > SCOPE_ABOVE)):
        return [cls() for cls in STRATEGIES["scope"]]
    parts = [cls() for cls in STRATEGIES[name]]
    if name == "cls" and (cls_lora == "yes" or (cls_lora == "auto" and n_params > LORA_ABOVE)):
        parts = [LoRA()] + parts
    return parts
