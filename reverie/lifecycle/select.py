"""Which episodes a night consolidates: one rule, applied once, by the lifecycle."""


def select(episodes: list, cfg, count_tokens, held=frozenset(), current_text=None) -> list:
    """Highest priority first, skipping private episodes, those the gate holds back (`held`:
    refused too often, reverie.gate) and those below cfg.min_priority (chatter, restatements:
    salience decides what is consolidated), within cfg.budget_episodes and cfg.budget_tokens
    (the first episode is taken whatever its length). `current_text(e)`, when given, replaces
    each chosen episode's text before it is counted.

    why the floor: consolidating chatter taught the model to answer small talk with its words
    ("Q: The fire alarm test is on Thursday. A: tidy ...") instead of "I don't know."."""
    ranked = sorted((e for e in episodes if not getattr(e, "private", False)
                     and e.id not in held and getattr(e, "priority", 1.0) >= cfg.min_priority),
                    key=lambda e: -getattr(e, "priority", 0.0))
    chosen, tokens = [], 0
    for e in ranked:
        if len(chosen) >= cfg.budget_episodes:
            break
        if current_text is not None:
            # why: consolidate what is still true, not sentences since replaced
            e.text = current_text(e)
        n = count_tokens(e.text)
        if chosen and tokens + n > cfg.budget_tokens:
            break
        chosen.append(e)
        tokens += n
    return chosen
