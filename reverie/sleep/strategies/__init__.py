"""Protection strategies, chosen by name. Each is a tuple of small parts on the one loop."""

from reverie.sleep.strategies.distill import Distill
from reverie.sleep.strategies.ewc import EWC
from reverie.sleep.strategies.lora import LoRA
from reverie.sleep.strategies.progressive import Progressive
from reverie.sleep.strategies.replay import Replay

STRATEGIES = {
    "naive": (),                      # plain fine-tuning on the night's material
    "replay": (Replay,),
    "ewc": (EWC,),
    "lora": (LoRA,),
    "distill": (Distill,),
    "progressive": (Progressive,),
    "cls": (Replay, Distill),         # the default: what measures best (see the bench)
}


def build_parts(name: str) -> list:
    return [cls() for cls in STRATEGIES[name]]
