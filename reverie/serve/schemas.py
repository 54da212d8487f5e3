"""Request bodies, validated strictly: wrong types are not coerced, unknown keys are refused
(an OpenAI parameter we do not implement is refused by name rather than silently ignored), NaN
and infinities are refused. FastAPI turns these models into /openapi.json."""

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

ID = Annotated[int, Field(ge=1, le=2**63 - 1)]
Text = Annotated[str, Field(max_length=1_000_000)]


def _false(value: bool) -> bool:
    if value:
        raise ValueError("only false is implemented")
    return value


NotImplementedFlag = Annotated[bool, AfterValidator(_false)]   # why: Literal[False] takes 0


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ReverieOptions(Strict):
    recall: bool | None = Field(None, description="recall episodes into the context")
    store: bool | None = Field(None, description="store this chat turn as an episode")


class StreamOptions(Strict):
    include_usage: bool | None = None


class TextPart(Strict):
    type: Literal["text"]
    text: Text


class Message(Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[TextPart] | None = None
    name: Annotated[str, Field(max_length=256)] | None = None


class Sampling(Strict):
    """Parameters chat and text completions share."""
    model: Annotated[str, Field(min_length=1, max_length=256)]
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: Annotated[str, Field(min_length=1, max_length=256)] | \
        Annotated[list[Annotated[str, Field(min_length=1, max_length=256)]],
                  Field(max_length=4)] | None = None
    seed: Annotated[int, Field(ge=-2**63, le=2**64 - 1)] | None = None
    user: Annotated[str, Field(max_length=256)] | None = None
    presence_penalty: Annotated[float, Field(ge=0, le=0)] | None = Field(
        None, description="only 0 (not implemented)")
    frequency_penalty: Annotated[float, Field(ge=0, le=0)] | None = Field(
        None, description="only 0 (not implemented)")
    reverie: ReverieOptions | None = None


class ChatRequest(Sampling):
    messages: Annotated[list[Message], Field(min_length=1, max_length=256)]
    max_completion_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    logprobs: NotImplementedFlag | None = Field(None, description="only false (not implemented)")
    store: bool | None = Field(None, description="OpenAI's flag; here: store the turn as an "
                                                 "episode (same as reverie.store)")


class CompletionRequest(Sampling):
    prompt: Text | Annotated[list[Text], Field(min_length=1, max_length=16)]
    echo: NotImplementedFlag | None = Field(None, description="only false (not implemented)")
    logprobs: None = Field(None, description="not implemented")
    suffix: None = Field(None, description="not implemented")
    best_of: Annotated[int, Field(ge=1, le=1)] | None = None


class EpisodeIn(Strict):
    text: Text
    source: Annotated[str, Field(max_length=256)] | None = None
    metadata: dict | None = None
    private: bool | None = None
    pinned: bool | None = None
    feedback: Annotated[float, Field(ge=0, le=1)] | None = None
    created_at: Annotated[float, Field(ge=0, le=1e11)] | None = None


class EpisodePost(Strict):
    """One episode (its fields at the top level) or a batch ({"episodes": [...]})."""
    text: Text | None = None
    source: Annotated[str, Field(max_length=256)] | None = None
    metadata: dict | None = None
    private: bool | None = None
    pinned: bool | None = None
    feedback: Annotated[float, Field(ge=0, le=1)] | None = None
    created_at: Annotated[float, Field(ge=0, le=1e11)] | None = None
    episodes: Annotated[list[EpisodeIn], Field(min_length=1, max_length=1000)] | None = None

    @model_validator(mode="after")
    def one_form(self):
        single = self.model_dump(exclude_none=True, exclude={"episodes"})
        if (self.episodes is None) == (not single) or (self.episodes is None and
                                                       self.text is None):
            raise ValueError("pass one episode (text, ...) or a batch (episodes: [...]), not "
                             "both, not neither")
        return self

    def records(self) -> list[dict]:
        items = self.episodes or [self]
        return [i.model_dump(exclude_none=True, exclude={"episodes"}) for i in items]


class FeedbackRequest(Strict):
    episode_id: ID | None = None
    completion_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    importance: Annotated[float, Field(ge=0, le=1)] = 1.0


class SleepRequest(Strict):
    tenant: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None, description="admin only: the tenant to consolidate (default: the caller's)")


class ActivateRequest(Strict):
    tenant: Annotated[str, Field(min_length=1, max_length=64)] | None = None
