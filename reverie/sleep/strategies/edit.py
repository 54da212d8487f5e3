"""Edit: the night's self-questions written into a few MLP layers in closed form (locate and
edit, reverie.sleep.edit) instead of trained by gradient steps; nothing else is trained."""

from reverie.models.backend import Backend
from reverie.sleep.dream import subject_of
from reverie.sleep.rehearsal import as_read
from reverie.sleep.strategies.base import Night, Part


def layer_range(spec: str) -> list[int]:
    lo, _, hi = spec.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


class Edit(Part):
    name = "edit"

    def wrap(self, night: Night, model):
        from reverie.sleep.edit import edit
        material = night.scratch.get("material", [])
        subjects = [s for s in (subject_of(ex.text) for ex in material if ex.kind == "episode")
                    if s]
        facts = {s: [(ex.question, ex.answer) for ex in material
                     if ex.kind == "self_question" and s in ex.question]
                 for s in dict.fromkeys(subjects)}
        backend = Backend(model, night.tokenizer)
        generic = as_read(backend, night.generative)
        cfg = night.cfg
        night.scratch["edit"] = edit(backend, facts, generic, layer_range(cfg.edit_layers),
                                     steps=cfg.edit_steps, weight=cfg.edit_weight,
                                     max_ratio=cfg.edit_max_ratio)
        return model

    def extend(self, night: Night, material: list) -> list:
        return []  # the facts are written; no gradient step follows
