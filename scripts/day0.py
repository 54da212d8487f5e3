"""What the trial scripts share: the `real` preset's day 0 (SmolLM2), its dream material (kept in
a pickle between runs), and the probes of one candidate model."""

import os
import pickle


def day0(seed: int, overrides: dict, cache: str = "", generative: int = 48):
    """(setup, night config, episode texts, dream material, generative samples) of day 0."""
    from reverie.bench.lifelong import Setup, sleep_config
    from reverie.sleep.dream import dream
    from reverie.sleep.rehearsal import generative_samples
    setup = Setup("real", seed, None)
    cfg = sleep_config("cls", {**setup.preset.sleep, **overrides}, seed)
    texts = [e.text for e in setup.stream.days[0] if e.kind != "noise"]
    if cache and os.path.exists(cache):
        with open(cache, "rb") as f:
            material, gen = pickle.load(f)
    else:
        material = dream(setup.pre, texts, cfg.dream, seed=seed)
        r = cfg.rehearsal
        gen = generative_samples(setup.pre, generative, r.generative_max_tokens, seed,
                                 r.generative_questions, r.generative_open)
        if cache:
            with open(cache, "wb") as f:
                pickle.dump((material, gen), f)
    return setup, cfg, texts, material, gen


def probe(setup, now) -> tuple[dict, list, list]:
    """Acquisition (HELD-OUT, TRAIN phrasings) and locality (all, open-book half, chatter half)
    of `now` against the pre-stream model; and its HELD-OUT answers, and the moved prompts."""
    from reverie.bench.lifelong import _accuracy, locality_and_kl
    pre, ref = setup.pre, setup.reference
    held, train_phrased = setup.probes.by_day[0], setup.probes.train_phrased
    answers = now.answer([q for q, _ in held])
    locality, kl, moved = locality_and_kl(pre, now, ref)
    half = len(ref) // 2
    row = {"acquisition": round(_accuracy(answers, [v for _, v in held]), 3),
           "acquisition_train": round(_accuracy(now.answer([q for q, _ in train_phrased]),
                                                [v for _, v in train_phrased]), 3),
           "locality": round(locality, 3), "kl": round(kl, 3),
           "locality_open": round(locality_and_kl(pre, now, ref[:half])[0], 3),
           "locality_chatter": round(locality_and_kl(pre, now, ref[half:])[0], 3)}
    return row, [[q, v, x] for (q, v), x in zip(held, answers)], moved
