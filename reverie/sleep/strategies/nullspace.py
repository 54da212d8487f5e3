"""Null space: the night trains the MLP down-projections only, and after every step their change
is projected off the directions the model's own writing uses (AlphaEdit, Fang et al. 2025).

Each down-projection reads a key (the MLP's hidden activation); the keys of the pre-sleep
model's generative samples span, per layer, a subspace of the most used directions (the top
`null_share` of the eigenvectors of their covariance). A change dW with dW k = 0 for those keys leaves
the layer's output on such text as it was, so unrelated prompts keep their answers, while the
keys of tonight's subjects still have room to move. Adam's steps are projected, not its
gradients: Adam rescales every coordinate, which would undo a projection of the gradient.
"""

import torch

from reverie.models.backend import Backend
from reverie.sleep.rehearsal import as_read
from reverie.sleep.strategies.base import Night, Part

DOWN = "mlp.down_proj.weight"


@torch.no_grad()
def key_covariances(model, tok, texts: list[str], max_len: int = 256) -> dict:
    """Per layer index, the sum of k k^T over every token of `texts` (k: down_proj's input)."""
    sums, mask = {}, {}
    hooks = []
    for i, layer in enumerate(model.model.layers):
        def grab(m, inp, out, i=i):
            k = inp[0].detach().double()[mask["m"].bool()]
            sums[i] = sums.get(i, 0) + k.T @ k
        hooks.append(layer.mlp.down_proj.register_forward_hook(grab))
    try:
        for j in range(0, len(texts), 8):
            enc = tok(texts[j:j + 8], return_tensors="pt", padding=True, truncation=True,
                      max_length=max_len)
            mask["m"] = enc["attention_mask"]
            model(**enc.to(next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return sums


def projector(cov: torch.Tensor, protected: int) -> torch.Tensor:
    """I - U U^T, U the top `protected` eigenvectors of `cov`."""
    _, vectors = torch.linalg.eigh(cov)
    top = vectors[:, -protected:] if protected else vectors[:, :0]
    return (torch.eye(cov.shape[0], dtype=cov.dtype) - top @ top.T).float()


class NullSpace(Part):
    name = "nullspace"

    def wrap(self, night: Night, model):
        night.lr = night.cfg.null_lr
        tok = night.tokenizer
        backend = Backend(model, tok)
        texts = as_read(backend, night.generative)
        if not texts:
            raise ValueError("the nullspace strategy needs the model's own writing to protect: "
                             "set rehearsal.generative_samples above 0")
        covs = key_covariances(model, tok, texts, night.cfg.train.max_len)
        frozen, projections = [], []
        for name, p in model.named_parameters():
            if not name.endswith(DOWN):
                if p.requires_grad:
                    p.requires_grad_(False)
                    frozen.append(p)
                continue
            layer = int(name.split(".layers.")[1].split(".")[0])
            keep = round(night.cfg.null_share * p.shape[1])
            P = projector(covs[layer], keep).to(p.device)
            projections.append((p, P, p.detach().clone()))
        if not projections:
            raise ValueError(f"the model has no {DOWN} to train; use another strategy")
        night.scratch["null_frozen"], night.scratch["null_projections"] = frozen, projections
        return model

    @torch.no_grad()
    def after_step(self, night: Night, model):
        for p, P, start in night.scratch["null_projections"]:
            p.copy_(start + (p - start) @ P)

    def finish(self, night: Night, model):
        for p in night.scratch.pop("null_frozen", []):
            p.requires_grad_(True)
        night.scratch.pop("null_projections", None)
        return model
