"""Locate-and-edit on the `real` preset's day 0 (SmolLM2): acquisition and locality after writing
the night's self-questions into a few MLP layers (reverie.sleep.edit), for one setting.

  python scripts/edit-trials.py --layers 3-8 --cache runs/cache0.pkl --json e.json

The dream material is made as the preset's night makes it (or read from --cache, written by
scripts/night-trials.py)."""

import argparse
import copy
import json
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
    from day0 import day0, probe
    from reverie.models.backend import Backend
    from reverie.sleep.dream import subject_of
    from reverie.sleep.edit import edit
    from reverie.sleep.rehearsal import as_read
    from reverie.sleep.strategies.edit import layer_range

    setup, cfg, texts, material, gen = day0(a.seed, {}, a.cache)
    pre = setup.pre
    facts = {s: [(ex.question, ex.answer) for ex in material
                 if ex.kind == "self_question" and s in ex.question]
             for s in map(subject_of, texts)}
    now = Backend(copy.deepcopy(pre.model), pre.tokenizer, pre.path)
    t0 = time.time()
    report = edit(now, facts, as_read(pre, gen), layer_range(a.layers), steps=a.steps, lr=a.lr,
                  max_ratio=a.max_ratio, weight=a.weight,
                  progress=lambda **kw: print(kw.get("message"), flush=True))
    seconds = time.time() - t0
    figures, answers, moved = probe(setup, now)
    row = {"args": vars(a), "report": report, "edit_seconds": round(seconds), **figures,
           "answers": answers[:12], "moved": moved[:8]}
    print(json.dumps({k: v for k, v in row.items() if k not in ("answers", "moved")}), flush=True)
    with open(a.json, "w") as f:
        json.dump(row, f, indent=1)


if __name__ == "__main__":
    main()
