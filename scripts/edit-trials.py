"""Locate-and-edit on the `real` preset's day 0 (SmolLM2): acquisition and locality after writing
the night's self-questions into a few MLP layers (reverie.sleep.edit), for one setting.

  python scripts/edit-trials.py --layers 3-8 --cache runs/cache0.pkl --json e.json

The dream material is made as the preset's night makes it (or read from --cache, written by
scripts/night-trials.py)."""

import argparse
import copy
import json
import os
import pickle
import time

import torch


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", default="3-8")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument("--max-ratio", type=float, default=1.0)
    p.add_argument("--weight", type=float, default=15000.0)
    p.add_argument("--cache", default="")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    from reverie.bench.lifelong import Setup, _accuracy, locality_and_kl, sleep_config
    from reverie.models.backend import Backend
    from reverie.sleep.dream import dream, subject_of
    from reverie.sleep.edit import edit
    from reverie.sleep.rehearsal import generative_samples

    setup = Setup("real", a.seed, None)
    pre, tok = setup.pre, setup.pre.tokenizer
    cfg = sleep_config("cls", setup.preset.sleep, a.seed)
    texts = [e.text for e in setup.stream.days[0] if e.kind != "noise"]
    if a.cache and os.path.exists(a.cache):
        with open(a.cache, "rb") as f:
            material, gen = pickle.load(f)
    else:
        material = dream(pre, texts, cfg.dream, seed=a.seed)
        gen = generative_samples(pre, 48, 48, a.seed, 0.75, 0.5)
    facts = {}
    for t in texts:
        s = subject_of(t)
        facts[s] = [(ex.question, ex.answer) for ex in material
                    if ex.kind == "self_question" and s in ex.question]
    generic = [pre.prompt(ex.question, ex.context) + ex.answer if ex.question else ex.text
               for ex in gen]
    lo, _, hi = a.layers.partition("-")
    layers = list(range(int(lo), int(hi or lo) + 1))
    model = copy.deepcopy(pre.model)
    now = Backend(model, tok, pre.path)
    t0 = time.time()
    report = edit(now, facts, generic, layers, steps=a.steps, lr=a.lr, max_ratio=a.max_ratio,
                  weight=a.weight, progress=lambda **kw: print(kw.get("message"), flush=True))
    seconds = time.time() - t0
    held, train_phrased = setup.probes.by_day[0], setup.probes.train_phrased
    answers = now.answer([q for q, _ in held])
    locality, kl, moved = locality_and_kl(pre, now, setup.reference)
    half = len(setup.reference) // 2
    row = {"args": vars(a), "report": report, "edit_seconds": round(seconds),
           "acquisition": round(_accuracy(answers, [v for _, v in held]), 3),
           "acquisition_train": round(_accuracy(now.answer([q for q, _ in train_phrased]),
                                                [v for _, v in train_phrased]), 3),
           "locality": round(locality, 3), "kl": round(kl, 3),
           "locality_open": round(locality_and_kl(pre, now, setup.reference[:half])[0], 3),
           "locality_chatter": round(locality_and_kl(pre, now, setup.reference[half:])[0], 3),
           "answers": [[q, v, x] for (q, v), x in zip(held, answers)][:12], "moved": moved[:8]}
    print(json.dumps({k: v for k, v in row.items() if k not in ("answers", "moved")}), flush=True)
    with open(a.json, "w") as f:
        json.dump(row, f, indent=1)


if __name__ == "__main__":
    main()
