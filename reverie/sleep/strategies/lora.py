"""LoRA: train low-rank adapters on every linear layer, then merge them into the weights."""

from reverie.sleep.strategies.base import Night, Part

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def lora_config(night: Night):
    from peft import LoraConfig
    return LoraConfig(r=night.cfg.lora_r, lora_alpha=night.cfg.lora_alpha, lora_dropout=0.0,
                      target_modules=TARGETS, task_type="CAUSAL_LM")


class LoRA(Part):
    name = "lora"

    def wrap(self, night: Night, model):
        from peft import get_peft_model
        night.lr = night.cfg.lora_lr
        return get_peft_model(model, lora_config(night))

    def finish(self, night: Night, model):
        return model.merge_and_unload()
