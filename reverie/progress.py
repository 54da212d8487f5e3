"""Progress callbacks -> tqdm bars. The library reports through `progress(**fields)`; only the
CLI draws."""

import sys

from tqdm import tqdm


class Bar:
    """A callable progress sink: fields `step`/`total` move the bar, others show as postfix,
    `message=` prints a line above it."""

    def __init__(self, desc: str, unit: str = "step"):
        self.desc, self.unit, self.bar = desc, unit, None

    def __call__(self, **kw):
        if "message" in kw:
            tqdm.write(kw["message"], file=sys.stderr)
            return
        if "step" in kw and "total" in kw:
            if self.bar is None:
                self.bar = tqdm(total=kw["total"], desc=self.desc, unit=self.unit, file=sys.stderr,
                                dynamic_ncols=True)
            self.bar.n = kw["step"]
            post = {k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in kw.items()
                    if k not in ("step", "total")}
            self.bar.set_postfix(post, refresh=False)
            self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()
