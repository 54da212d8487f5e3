"""ServeConfig: every knob of `reverie serve`, validated, loadable from configs/serve*.yaml.

API keys never live in code or in a committed preset: they come from environment variables
(`keys_env`, `admin_key_env`) or from a file the operator keeps outside the repository
(`keys_file`, YAML mapping key -> tenant).
"""

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from reverie.config import field, positive
from reverie.errors import ReverieError
from reverie.gate.config import GateConfig
from reverie.memory.config import MemoryConfig
from reverie.memory.store import check_namespace_name
from reverie.sleep.config import SleepConfig

STORE_MODES = ("off", "statements", "all")


@dataclass
class ServeConfig:
    # ---------------------------------------------------------------- where
    host: str = field("127.0.0.1", "address to bind; anything but loopback needs API keys")
    port: int = field(8000, "TCP port (0: a free one, printed at start)")
    data: str = field("./reverie-data", "service data directory: tenants/<name>/ under it, each "
                                        "with its own memory and snapshot lineage")
    model: str = field("world", "base model shared by every tenant: world, smollm2 or a "
                                "directory")
    model_name: str = field("", "the model id clients pass and /v1/models lists (default: the "
                                "model spec's last path part)")
    # ---------------------------------------------------------------- tenants and keys
    keys_env: str = field("REVERIE_API_KEYS", "environment variable holding tenant keys as "
                                              "'key:tenant,key:tenant'")
    keys_file: str = field("", "YAML file mapping API key -> tenant (kept outside the repo)")
    admin_key_env: str = field("REVERIE_ADMIN_KEY", "environment variable holding the admin "
                                                    "key (snapshot operations, any tenant)")
    open_tenant: str = field("default", "tenant every request belongs to when no key is "
                                        "configured (open mode: loopback only)")
    # ---------------------------------------------------------------- requests
    max_body_bytes: int = field(1_000_000, "largest request body accepted (413 above)")
    max_tokens: int = field(128, "most tokens one completion may generate")
    default_max_tokens: int = field(48, "completion length when the request names none")
    default_temperature: float = field(0.0, "temperature when the request names none; 0 is "
                                            "greedy (OpenAI's default is 1: a small model "
                                            "answers facts best greedily)")
    max_n: int = field(4, "most choices (n) one request may ask for")
    stop_at_newline: bool = field(True, "end a completion at its first newline (the world "
                                        "model answers in one line)")
    recall: bool = field(True, "recall episodes into the context unless a request switches "
                               "it off")
    store_chat: str = field("statements", "what a chat turn stores as an episode unless the "
                                          "request says otherwise: off, statements (the last "
                                          "user message when it states a fact about someone "
                                          "and is no question) or all (the last user message)")
    completions_remembered: int = field(10_000, "completion ids kept for POST /v1/feedback "
                                                "(oldest forgotten first)")
    # ---------------------------------------------------------------- generation worker
    batch_window_ms: float = field(5.0, "how long the model worker waits for more requests "
                                        "to batch with the first one, ms")
    max_batch: int = field(16, "most sequences in one batched generation")
    recall_window_ms: float = field(3.0, "how long a recall waits for other requests' queries to "
                                         "embed them in one batch, ms (0: each on its own)")
    max_queue: int = field(256, "completions waiting for the model worker beyond which new ones "
                                "get 429 (rate_limit_exceeded) instead of an ever longer wait")
    bf16: bool = field(False, "bf16 autocast for generation on CPU: 1.5x faster (measured, world "
                              "model, batch 16), but greedy answers may then differ from the "
                              "fp32 facade's (`reverie ask`) where two tokens nearly tie")
    threads: int = field(0, "torch threads of the serving process (0: cores - night_threads, "
                            "at least 1)")
    # ---------------------------------------------------------------- nights
    night_threads: int = field(1, "torch threads of the night's process (its share of cores)")
    idle_night_s: float = field(0.0, "start a night after the service was idle this long, "
                                     "seconds, when a tenant has new episodes (0: never)")
    priority_night: float = field(0.0, "start a night when a tenant's unconsolidated priority "
                                       "sums past this (0: never)")
    scheduler_poll_s: float = field(2.0, "how often the scheduler looks, seconds")
    night_timeout_s: float = field(3600.0, "a night running longer is stopped and failed")
    jobs_remembered: int = field(200, "finished night jobs kept for GET /v1/sleep/{job}")
    sleep: SleepConfig = field(SleepConfig(), "the nights' configuration")
    memory: MemoryConfig = field(MemoryConfig(), "every tenant's hippocampus")
    gate: GateConfig = field(GateConfig(), "what a night's candidate must pass to serve")

    def __post_init__(self):
        positive(self, "max_body_bytes", "max_tokens", "default_max_tokens", "max_n",
                 "batch_window_ms", "max_batch", "max_queue", "night_threads",
                 "scheduler_poll_s", "night_timeout_s", "completions_remembered",
                 "jobs_remembered")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.default_max_tokens > self.max_tokens:
            raise ValueError(f"default_max_tokens ({self.default_max_tokens}) must be <= "
                             f"max_tokens ({self.max_tokens})")
        if not 0 <= self.default_temperature <= 2:
            raise ValueError(f"default_temperature must be in [0, 2], got "
                             f"{self.default_temperature}")
        if self.store_chat not in STORE_MODES:
            raise ValueError(f"store_chat must be one of {', '.join(STORE_MODES)}, got "
                             f"{self.store_chat!r}")
        if self.threads < 0 or self.idle_night_s < 0 or self.priority_night < 0 or \
                self.recall_window_ms < 0:
            raise ValueError("threads, idle_night_s, priority_night and recall_window_ms must "
                             "be >= 0")
        try:
            check_namespace_name(self.open_tenant)
        except ReverieError as e:
            raise ValueError(f"open_tenant: {e}") from None

    @property
    def served_name(self) -> str:
        return self.model_name or Path(self.model.rstrip("/")).name or "model"

    def serving_threads(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 2) - self.night_threads)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_keys(cfg: ServeConfig, environ=os.environ) -> tuple[dict, str | None]:
    """-> ({api key: tenant}, admin key or None), from the environment and the keys file.
    Open mode (no key at all) is refused on a non-loopback host."""
    keys: dict = {}
    raw = environ.get(cfg.keys_env, "") if cfg.keys_env else ""
    for item in filter(None, (s.strip() for s in raw.split(","))):
        key, sep, tenant = item.rpartition(":")
        if not sep or not key or not tenant:
            raise ReverieError(f"${cfg.keys_env}: {item[:4]}... must look like key:tenant")
        keys[key] = tenant
    if cfg.keys_file:
        path = Path(cfg.keys_file).expanduser()
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ReverieError(f"cannot read keys_file {str(path)!r}: {e.__class__.__name__}; "
                               f"pass a YAML mapping of key: tenant") from None
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in data.items()):
            raise ReverieError(f"keys_file {str(path)!r} must map each key (text) to a tenant "
                               f"(text)")
        keys.update(data)
    for tenant in set(keys.values()):
        try:
            check_namespace_name(tenant)
        except ReverieError as e:
            raise ReverieError(f"tenant name: {e}") from None
    admin = (environ.get(cfg.admin_key_env) or None) if cfg.admin_key_env else None
    if admin and admin in keys:
        raise ReverieError("the admin key is also a tenant key; give the admin its own key")
    if not keys and not admin and not is_loopback(cfg.host):
        raise ReverieError(f"no API key configured and host {cfg.host!r} is not loopback; set "
                           f"${cfg.keys_env} (key:tenant,...) and ${cfg.admin_key_env}, or "
                           f"bind 127.0.0.1")
    return keys, admin
