"""What the scope's trigger fires on: fit it as the night does on the `real` preset's day 0
(SmolLM2, the dream material cached by night-trials.py) and print, for each question, its best
match against the mentions of the night's subjects and whether it passes the threshold.

  python scripts/scope-trigger.py --cache runs/day0.pkl ["Where does Emma Lowell work?" ...]
"""

import argparse
import sys

import torch

DEFAULT = ["Where does Astrid Lowell work?", "Who employs astrid lowell?",
           "What does Ms. Lowell do?", "Where does Astrid work?", "Where does Lowell work?",
           "WHERE DOES ASTRID LOWELL WORK?", "Where does Emma Lowell work?",
           "Where does Erik Lindqvist live?", "Quentin Blackwood's birthday?",
           "What is the capital of France?", "Write a poem about the sea."]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("questions", nargs="*", default=DEFAULT)
    p.add_argument("--layer", type=float, default=0.2, help="sleep.scope_layer")
    p.add_argument("--cache", default="", help="pickle of the dream material (made if missing)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(1)
    from day0 import day0
    from reverie.sleep.dream import subject_of
    from reverie.sleep.rehearsal import as_read
    from reverie.sleep.strategies.scope import decoder_layers, fit_trigger, scope_layer
    setup, cfg, texts, material, gen = day0(a.seed, {}, a.cache, 48)
    pre, tok = setup.pre, setup.pre.tokenizer
    names = sorted({subject_of(t) for t in texts} - {None})
    layer = scope_layer(a.layer, len(decoder_layers(pre.model)))
    trigger, report = fit_trigger(pre.model, tok, as_read(pre, gen), as_read(pre, material),
                                  names, layer, cfg.train.max_len)
    print(report)
    if trigger is None:
        sys.exit("no trigger: " + report["skipped"])
    for q in a.questions:
        enc = tok([pre.prompt(q)], return_tensors="pt")
        with torch.no_grad():
            hidden = pre.model(**enc, output_hidden_states=True).hidden_states[layer]
        best = float(trigger.score(hidden)[0].max())
        print(f"{best:6.3f}  {'fires' if best > trigger.threshold else '-    '}  {q}")


if __name__ == "__main__":
    main()
