"""LoRA: train low-rank adapters on every linear layer, then merge them into the weights."""

from dataclasses import dataclass

from reverie.config import field, positive
from reverie.sleep.strategies.base import Night, Part

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoRAConfig:
    r: int = field(16, "adapter rank")
    alpha: float = field(32.0, "scaling numerator (the update is scaled by alpha / r)")
    # why 2e-3: adapters start at zero and move little per step; at the whole model's rate
    # (8e-4) a night of the quick preset learned less
    lr: float = field(2e-3, "the night's peak learning rate while adapters train")

    def __post_init__(self):
        positive(self, "r", "alpha", "lr")


def lora_config(cfg: LoRAConfig):
    from peft import LoraConfig
    return LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=0.0, target_modules=TARGETS,
                      task_type="CAUSAL_LM")


class LoRA(Part):
    name = "lora"
    config = LoRAConfig
    owns = ("lr",)

    def wrap(self, night: Night, model):
        from peft import get_peft_model
        return get_peft_model(model, lora_config(self.settings(night)))

    def finish(self, night: Night, model):
        return model.merge_and_unload()
