"""One night's learning curve on the `real` preset's day 0 (SmolLM2): how the training setup
alone moves acquisition (HELD-OUT and TRAIN phrasings) and locality, epoch by epoch.

The dream material is made once, as the preset's night makes it (the world model writes and
answers the questions; SmolLM2's own words where they agree); then one training setup runs on
it, outside the night's loop so several epochs can be probed in one run. One core each:

  python scripts/night-trials.py --mode full-mlp --lr 2e-4 --kl 3 --replay --json t.json
  python scripts/night-trials.py --mode lora-mlp --lr 2e-3 --json t.json

  python scripts/night-trials.py --null 1 --null-dims 1000 --lr 1e-2 --epochs 6 \
      --cache runs/day0.pkl --json t.json      (the nullspace strategy's training, stop 13)
  python scripts/night-trials.py --scope 0.2 --lr 6e-4 --epochs 8 --every 4 \
      --cache runs/day0.pkl --json t.json      (the scope strategy's training, stop 15)

The README's "One night, measured" SmolLM2 trials ran this way (seed 0). --cache keeps the
dream material between runs (stop 13's rows all read one made before the answer hints).
"""

import argparse
import copy
import dataclasses
import json
import random
import time

import torch


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", default="full-mlp", choices=["full", "full-mlp", "lora-mlp", "lora"])
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--every", type=int, default=2, help="probe every N epochs")
    p.add_argument("--kl", type=float, default=0.0, help="KL weight on generative samples")
    p.add_argument("--replay", action="store_true", help="also learn generative samples as text")
    p.add_argument("--generative", type=int, default=48)
    p.add_argument("--teacher-words", action="store_true",
                   help="learn the writer's answers only (dream.learner_voice=false)")
    p.add_argument("--counterparts", type=int, default=0,
                   help="self-questions re-asked per episode about a made-up person, closed- "
                        "and open-book, kept by the KL (dream.counterparts)")
    p.add_argument("--layers", default="", help="train only these layers' MLPs, e.g. 4-12")
    p.add_argument("--cache", default="", help="pickle of the dream material (made if missing)")
    p.add_argument("--eps", type=float, default=1e-8, help="AdamW epsilon")
    p.add_argument("--sgd", action="store_true", help="SGD with momentum 0.9 instead of AdamW")
    p.add_argument("--only", default="", help="train on these material kinds only (comma list)")
    p.add_argument("--voice-samples", type=int, default=0, help="dream.voice_samples")
    p.add_argument("--drop-terse", action="store_true",
                   help="leave out self-questions whose answer is 3 words or fewer")
    p.add_argument("--null", type=float, default=0.0,
                   help="train the MLP down-projections only, each step's change projected off "
                        "the subspace holding this share of the energy of the inputs the model "
                        "sees on its own writing (AlphaEdit-style null space); 0: off")
    p.add_argument("--null-dims", type=int, default=0,
                   help="with --null: protect this many top directions per layer instead")
    p.add_argument("--grow", type=int, default=0,
                   help="the grow strategy's night with this many neurons per subject in each "
                        "MLP (sleep.grow_neurons; --lr, --kl and --quiet set its rate and "
                        "weights); 0: off")
    p.add_argument("--grow-layers", default="all", help="with --grow: 'all' or 'first-last'")
    p.add_argument("--quiet", type=float, default=10.0, help="with --grow: sleep.grow_quiet")
    p.add_argument("--scope", type=float, default=0.0,
                   help="the scope strategy's night: the MLPs of the layers from this share of "
                        "the depth on (sleep.scope_layer; 0.2 on SmolLM2: layer 6), their change "
                        "applied only from a mention of tonight's subjects; with --mode "
                        "full-mlp. 0: off")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    from day0 import day0, probe
    from reverie.models.backend import Backend
    from reverie.models.batching import batches, collate, encode
    from reverie.sleep.dream import subject_of
    from reverie.sleep.rehearsal import as_read
    from reverie.sleep.strategies.distill import kl_per_token
    from reverie.sleep.train import lr_at

    setup, cfg, texts, material, gen = day0(
        a.seed, {"dream.learner_voice": not a.teacher_words, "dream.voice_samples": a.voice_samples},
        a.cache, a.generative)
    pre, tok = setup.pre, setup.pre.tokenizer
    if a.counterparts:
        from reverie.sleep.dream import counterparts
        pairs = [[(ex.question, ex.answer) for ex in material
                  if ex.kind == "self_question" and (subject_of(t) or "\0") in ex.question]
                 for t in texts]
        extra = counterparts(pre, texts, pairs, a.counterparts, random.Random(a.seed),
                             [ex.text or ex.question for ex in gen], seed=a.seed)
        print(f"{len(extra)} counterparts, e.g. {extra[:1]} {extra[-1:]}", flush=True)
        gen = gen + extra
    if a.replay:
        material = material + gen
    if a.drop_terse:
        material = [ex for ex in material
                    if ex.kind != "self_question" or len(ex.answer.split()) > 3]
    if a.only:
        material = [ex for ex in material if ex.kind in a.only.split(",")]
    model = copy.deepcopy(pre.model)
    if a.mode.startswith("lora"):
        from peft import LoraConfig, get_peft_model
        targets = ["gate_proj", "up_proj", "down_proj"]
        if a.mode == "lora":
            targets += ["q_proj", "k_proj", "v_proj", "o_proj"]
        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                 target_modules=targets, task_type="CAUSAL_LM"))
    elif a.mode == "full-mlp":
        import re
        lo, _, hi = a.layers.partition("-")
        for n, q in model.named_parameters():
            m = re.search(r"layers\.(\d+)\.", n)
            inside = not a.layers or (m and int(lo) <= int(m.group(1)) <= int(hi or lo))
            q.requires_grad_(".mlp." in n and bool(inside))
    projections = {}
    if a.null:
        for n, q in model.named_parameters():
            q.requires_grad_(n.endswith("mlp.down_proj.weight"))
        generic = as_read(pre, gen)
        from reverie.sleep.strategies.nullspace import key_covariances, projector
        kept = []
        for i, C in key_covariances(model, tok, generic).items():
            w = torch.linalg.eigvalsh(C).flip(0)
            k = a.null_dims or int((torch.cumsum(w, 0) / w.sum() < a.null).sum()) + 1
            kept.append(k)
            W = model.model.layers[i].mlp.down_proj.weight
            projections[W] = (projector(C, k), W.detach().clone())
        print(f"null space: protected dims per layer {kept}", flush=True)
    grown, part = [], None
    if a.grow:  # the grow strategy's own part: its keys, its renamed material, its loss
        from reverie.sleep.strategies.base import Night, SleepState
        from reverie.sleep.strategies.grow import Grow, quiet
        ncfg = dataclasses.replace(cfg, grow_neurons=a.grow, grow_layers=a.grow_layers,
                                   grow_quiet=a.quiet, kl_weight=a.kl, grow_lr=a.lr)
        night = Night(ncfg, SleepState(), tok, pre.model, gen, random.Random(a.seed), a.lr,
                      scratch={"material": material})
        part = Grow()
        model = part.wrap(night, model)
        grown = night.scratch["grown"]
        print(f"grown: {grown[0].gate.shape[0]} neurons per layer, "
              f"{len(night.scratch['grow_renamed'])} renamed examples", flush=True)
    if a.scope:  # the scope strategy's own part: its trigger, its frozen layers, its deltas
        from reverie.sleep.strategies.base import Night, SleepState
        from reverie.sleep.strategies.scope import Scope
        ncfg = dataclasses.replace(cfg, scope_layer=a.scope)
        night = Night(ncfg, SleepState(), tok, pre.model, gen, random.Random(a.seed), a.lr,
                      scratch={"material": material})
        model = Scope().wrap(night, model)
        print(f"scope: {night.scratch['scope']}", flush=True)
    params = [q for q in model.parameters() if q.requires_grad]
    enc = [encode(tok, e, cfg.train.max_len) for e in material]
    kl_rows = [(encode(tok, e, cfg.train.max_len)[0],) * 2 for e in gen]
    rng = random.Random(a.seed)
    plans = [batches([len(i) for i, _ in enc], cfg.train.batch_tokens, rng) for _ in range(a.epochs)]
    total = sum(map(len, plans))
    opt = (torch.optim.SGD(params, lr=a.lr, momentum=0.9) if a.sgd else
           torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.98), eps=a.eps,
                             weight_decay=0.0))
    out = {"args": vars(a), "examples": len(material), "curve": []}
    step, cursor, tokens, train_s = 0, 0, 0, 0.0
    for epoch in range(a.epochs):
        t0 = time.time()
        model.train()
        for batch in plans[epoch]:
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, a.lr, cfg.train.warmup_frac, cfg.train.min_lr_ratio)
            ids, labels, mask = collate([enc[i] for i in batch], tok.pad_token_id)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                if part is not None:
                    loss = loss + part.loss(night, model)
                elif a.kl and kl_rows:
                    chunk = [kl_rows[(cursor + i) % len(kl_rows)] for i in range(8)]
                    cursor += 8
                    ki, _, km = collate(chunk, tok.pad_token_id)
                    with torch.no_grad():
                        ref = pre.model(input_ids=ki, attention_mask=km).logits.float()
                    cur = model(input_ids=ki, attention_mask=km).logits.float()
                    loss = loss + a.kl * kl_per_token(ref, cur, km)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            with torch.no_grad():
                for W, (P, W0) in projections.items():
                    W.copy_(W0 + (W - W0) @ P)
            step += 1
            tokens += int(mask.sum())
        train_s += time.time() - t0
        if (epoch + 1) % a.every and epoch + 1 != a.epochs:
            continue
        model.eval()
        now = Backend(model, tok, pre.path)
        figures, _, moved = probe(setup, now)
        if grown:  # what the new neurons add on the locality prompts, and on the own writing
            def loudness(texts):
                out = []
                for t in texts:
                    enc = tok([t], return_tensors="pt")
                    for g in grown:
                        g.record = []
                    with torch.no_grad():
                        model(**enc)
                    out.append(float(quiet(grown, enc["attention_mask"])))
                    for g in grown:
                        g.record = None
                return round(sum(out) / len(out), 5)
            refs = setup.reference
            figures["quiet_open"] = loudness([p + c for p, c in refs[:len(refs) // 2]])
            figures["quiet_chatter"] = loudness([p + c for p, c in refs[len(refs) // 2:]])
            figures["quiet_own"] = loudness(as_read(pre, gen)[:24])
            figures["quiet_material"] = loudness(as_read(pre, material)[:24])
            figures["quiet_renamed"] = loudness(as_read(pre, night.scratch["grow_renamed"])[:24])
        row = {"epoch": epoch + 1, **figures,
               "train_seconds": round(train_s), "tokens_per_s": round(tokens / train_s, 1)}
        print(json.dumps(row), flush=True)
        out["curve"].append(row)
        out["moved"] = moved
    with open(a.json, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
