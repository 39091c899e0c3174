"""Typed shapes of the open data we accept: chat messages and imported rows.

Parsed with pydantic at the edge, so everything past it can trust the fields.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

NUL_MESSAGE = "contains the NUL character (\\u0000), which PostgreSQL cannot store"


def nul_path(value: Any, path: str = "") -> str | None:
    """Where in a parsed JSON value a string holds NUL ("responses.0.text"), else None."""
    if isinstance(value, str | bytes | bytearray):  # Parquet binary columns arrive as bytes
        nul = "\x00" if isinstance(value, str) else b"\x00"
        return (path or "value") if nul in value else None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        name = str(key).replace("\x00", "\\u0000")
        here = f"{path}.{name}" if path else name
        if name != str(key):
            return here
        if found := nul_path(item, here):
            return found
    return None


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("response text is blank")
    return value


# A candidate's text: at least one character that is not whitespace.
ResponseText = Annotated[str, Field(min_length=1), AfterValidator(_not_blank)]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1)


class ImportedResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: ResponseText
    model: str = ""
    generation_params: dict[str, Any] = Field(default_factory=dict)


class ImportedRow(BaseModel):
    """One prompt and its candidate responses, in the row shape of a Hugging Face data set.

    `prompt` is text or a list of chat messages (TRL's conversational form); `messages`
    is accepted as another name for the chat. Responses are strings or objects with
    `text` and `model`.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = ""
    prompt: str | list[Message] | None = None
    messages: list[Message] | None = None
    responses: list[ImportedResponse] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("responses", mode="before")
    @classmethod
    def texts_as_responses(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"text": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("id", mode="before")
    @classmethod
    def id_as_text(cls, value: Any) -> Any:
        return "" if value is None else str(value) if isinstance(value, int) else value

    @model_validator(mode="after")
    def one_prompt_form(self) -> ImportedRow:
        if self.prompt is not None and self.messages is not None:
            raise ValueError("give either 'prompt' or 'messages', not both")
        chat = self.messages if self.messages is not None else self.prompt
        if chat is None or chat == "" or (isinstance(chat, str) and not chat.strip()):
            raise ValueError("'prompt' (text or chat messages) is required")
        if isinstance(chat, list):
            check_chat(chat)
        return self

    @property
    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else ""

    @property
    def prompt_messages(self) -> list[dict[str, str]] | None:
        chat = self.messages if self.messages is not None else self.prompt
        if isinstance(chat, list):
            return [message.model_dump() for message in chat]
        return None


def check_chat(messages: list[Message]) -> None:
    if not messages:
        raise ValueError("chat messages are empty")
    if messages[-1].role != "user":
        raise ValueError("a chat prompt must end with a user message")


def parse_messages(raw: Any) -> list[Message]:
    """Parse stored chat turns, raising ValueError with the first problem."""
    if not isinstance(raw, list):
        raise ValueError("messages must be a list of {role, content} objects")
    try:
        messages = [Message.model_validate(item) for item in raw]
    except ValidationError as exc:
        raise ValueError(first_error(exc)) from exc
    check_chat(messages)
    return messages


def first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else error["msg"]


class CandidateRow(BaseModel):
    """One response to add to a prompt already in the project, named by id or external id."""

    model_config = ConfigDict(extra="forbid")

    prompt_id: int | None = None
    prompt_external_id: str | None = None
    text: ResponseText
    model: str = Field(default="", max_length=200)
    generation_params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def names_one_prompt(self) -> CandidateRow:
        if (self.prompt_id is None) == (self.prompt_external_id is None):
            raise ValueError("give either 'prompt_id' or 'prompt_external_id'")
        return self
