"""Progressive adapters: each night trains a new LoRA adapter over frozen weights and earlier
adapters; adapters are kept apart (never merged), so every night's change stays removable.
Its adapters take their shape and rate from the `lora` section."""

from reverie.sleep.strategies.base import Night, Part
from reverie.sleep.strategies.lora import LoRAConfig, lora_config


class Progressive(Part):
    name = "progressive"
    config = LoRAConfig
    section = "lora"
    owns = ("lr",)

    def wrap(self, night: Night, model):
        from peft import PeftModel, get_peft_model
        settings = lora_config(self.settings(night), model)
        name = f"night{night.state.nights}"
        if not isinstance(model, PeftModel):
            return get_peft_model(model, settings, adapter_name=name)
        model.add_adapter(name, settings)
        names = list(model.peft_config)
        model.base_model.set_adapter(names)  # all adapters active: their deltas add up
        for pname, p in model.named_parameters():
            p.requires_grad = f".{name}." in pname
        return model
