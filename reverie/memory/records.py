"""Records in, clean episode fields out: the one gate every ingest passes.

A record is a string (bytes must be UTF-8) or an object with 'text' and optional fields. Every
problem is a one-line ReverieError naming the record and the fix; the batch is validated whole
before anything is stored, so a bad record never leaves half a batch behind.
"""

import hashlib
import json

from reverie.errors import ReverieError
from reverie.memory.config import MemoryConfig

RECORD_KEYS = {"text", "source", "metadata", "private", "pinned", "feedback", "created_at"}


def validate(record, i: int, cfg: MemoryConfig) -> dict:
    """One record -> a clean dict, or a ReverieError naming record i and the fix."""
    if isinstance(record, (bytes, bytearray)):
        try:
            record = bytes(record).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ReverieError(f"episode {i}: text is not valid UTF-8 (byte {e.start}); "
                               f"re-encode the input as UTF-8") from None
    if isinstance(record, str):
        record = {"text": record}
    if not isinstance(record, dict):
        raise ReverieError(f"episode {i}: expected text or an object with 'text', got "
                           f"{type(record).__name__}")
    unknown = set(record) - RECORD_KEYS
    if unknown:
        raise ReverieError(f"episode {i}: unknown field(s) {sorted(unknown)}; allowed: "
                           f"{', '.join(sorted(RECORD_KEYS))}")
    text = record.get("text")
    if not isinstance(text, str):
        raise ReverieError(f"episode {i}: 'text' must be a string, got {type(text).__name__}")
    try:
        text.encode("utf-8")                        # lone surrogates cannot be stored
    except UnicodeEncodeError:
        raise ReverieError(f"episode {i}: text is not valid Unicode (lone surrogates); "
                           f"re-encode the input as UTF-8") from None
    if "\x00" in text:
        raise ReverieError(f"episode {i}: text holds NUL characters; strip them or ingest the "
                           f"file as text")
    text = " ".join(text.split())
    if not text:
        raise ReverieError(f"episode {i}: text is empty; drop empty lines before ingesting")
    size = len(text.encode("utf-8"))
    if size > cfg.max_text_bytes:
        raise ReverieError(f"episode {i}: text is {size:,} bytes, over max_text_bytes="
                           f"{cfg.max_text_bytes:,}; split the document into smaller episodes")
    out = dict(record, text=text)
    for flag in ("private", "pinned"):
        if not isinstance(out.get(flag, False), bool):
            raise ReverieError(f"episode {i}: '{flag}' must be true or false")
    fb = out.get("feedback", 0.0)
    if isinstance(fb, bool) or not isinstance(fb, (int, float)) or not 0 <= fb <= 1:
        raise ReverieError(f"episode {i}: 'feedback' must be a number in [0, 1], got {fb!r}")
    if not isinstance(out.get("metadata", {}), dict):
        raise ReverieError(f"episode {i}: 'metadata' must be an object")
    if not isinstance(out.get("source", ""), str):
        raise ReverieError(f"episode {i}: 'source' must be a string")
    return out


def content_hash(text: str) -> str:
    """Exact-repeat key; case-folded, since a copy differing only in case is the same episode
    (whitespace is already normalised by validate)."""
    return hashlib.sha256(text.lower().encode("utf-8")).hexdigest()


def parse_lines(data: bytes, where: str = "input") -> list:
    """Text lines or JSONL objects -> records. Blank lines separate and are skipped; a JSON line
    must be an object with 'text'. Bad bytes name the line."""
    records = []
    for n, raw in enumerate(data.splitlines(), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ReverieError(f"{where} line {n}: not valid UTF-8 (byte {e.start}); re-encode "
                               f"the file as UTF-8") from None
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ReverieError(f"{where} line {n}: invalid JSON ({e.msg}); write one object "
                                   f"per line like {{\"text\": \"...\"}}") from None
            records.append(record)
        else:
            records.append(line)
    return records
