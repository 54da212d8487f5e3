"""LoRA: train low-rank adapters on every projection of the decoder, then merge them into the
weights. The projections are the model's own nn.Linear and Conv1D modules (Llama's q_proj ...
down_proj, GPT-2's c_attn/c_proj/c_fc, GPT-NeoX's query_key_value/dense...), the output head
aside."""

from dataclasses import dataclass

from reverie.config import field, positive
from reverie.models.scope import is_projection
from reverie.sleep.strategies.base import Night, Part


@dataclass
class LoRAConfig:
    r: int = field(16, "adapter rank")
    alpha: float = field(32.0, "scaling numerator (the update is scaled by alpha / r)")
    # why 2e-3: adapters start at zero and move little per step; at the whole model's rate
    # (8e-4) a night of the quick preset learned less
    lr: float = field(2e-3, "the night's peak learning rate while adapters train")

    def __post_init__(self):
        positive(self, "r", "alpha", "lr")


def projections(model) -> list[tuple[str, object]]:
    """(last part of the name, module) of each nn.Linear or Conv1D LoRA adapts on `model`: all
    but the output head; on a model that already carries adapters, the modules they wrap."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    head = model.get_output_embeddings()
    out, wrapped = [], []
    for name, module in model.named_modules():
        if any(name.startswith(w + ".") for w in wrapped):
            continue
        if isinstance(module, BaseTunerLayer):
            wrapped.append(name)
            module = module.get_base_layer()
        if is_projection(module) and module is not head:
            out.append((name.rsplit(".", 1)[-1], module))
    return out


def targets(model) -> list[str]:
    return sorted({name for name, _ in projections(model)})


def lora_config(cfg: LoRAConfig, model):
    from peft import LoraConfig
    from transformers.pytorch_utils import Conv1D
    found = projections(model)
    if not found:
        raise ValueError(f"{type(model).__name__} has no nn.Linear or Conv1D projection for "
                         f"LoRA to adapt: use --strategy cls")
    conv = {isinstance(m, Conv1D) for _, m in found}
    if len(conv) > 1:
        raise ValueError(f"{type(model).__name__} mixes nn.Linear and Conv1D projections, which "
                         f"one LoRA config cannot adapt: use --strategy cls")
    # why fan_in_fan_out: a Conv1D weight is (in, out), the transpose of nn.Linear's
    return LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=0.0,
                      target_modules=sorted({n for n, _ in found}), fan_in_fan_out=conv == {True},
                      task_type="CAUSAL_LM")


class LoRA(Part):
    name = "lora"
    config = LoRAConfig
    owns = ("lr",)

    def wrap(self, night: Night, model):
        from peft import get_peft_model
        return get_peft_model(model, lora_config(self.settings(night), model))

    def finish(self, night: Night, model):
        return model.merge_and_unload()
