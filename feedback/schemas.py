"""Typed shapes of the open data we accept: chat messages and imported rows.

Parsed with pydantic at the edge, so everything past it can trust the fields.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import orjson
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


# Deeper JSON is refused: no data set needs it, and Python's parser, validators and
# serialisers recurse per level (a few thousand levels raise RecursionError).
MAX_JSON_DEPTH = 100
DEPTH_MESSAGE = f"nested deeper than {MAX_JSON_DEPTH} levels"


def _path_text(parts: list[str]) -> str:
    return ".".join(parts[:8]) + (".…" if len(parts) > 8 else "")


def json_problem(value: Any) -> tuple[str, str] | None:
    """(where, what) for the first string holding NUL or value nested too deep, else None.

    `where` is a dotted path ("responses.0.text"). Walks without recursion, so any depth
    that parsed can be checked; most values skip the walk (`_plainly_fine`).
    """
    if _plainly_fine(value):
        return None
    stack: list[tuple[Any, list[str]]] = [(value, [])]
    while stack:
        item, parts = stack.pop()
        if isinstance(item, str | bytes | bytearray):  # Parquet binary columns arrive as bytes
            nul = "\x00" if isinstance(item, str) else b"\x00"
            if nul in item:
                return _path_text(parts) or "value", NUL_MESSAGE
            continue
        if isinstance(item, dict):
            items = list(item.items())
        elif isinstance(item, list | tuple):
            items = list(enumerate(item))
        else:
            continue
        if len(parts) >= MAX_JSON_DEPTH:
            return _path_text(parts) or "value", DEPTH_MESSAGE
        for key, child in reversed(items):
            name = str(key).replace("\x00", "\\u0000")
            if name != str(key):
                return _path_text([*parts, name]), NUL_MESSAGE
            stack.append((child, [*parts, name]))
    return None


def _plainly_fine(value: Any) -> bool:
    """Whether orjson's encoding of `value` shows no NUL and too few brackets to nest past
    MAX_JSON_DEPTH: a check at C speed that an import row passes in a few microseconds,
    where the walk takes tens; a large value with many brackets (a request of many rows)
    gets a walk over its containers only. False when orjson cannot encode it (bytes, big
    integers): the full walk decides."""
    try:
        encoded = orjson.dumps(value)
    except TypeError:
        return False
    if b"\\u0000" in encoded:
        return False
    return encoded.count(b"[") + encoded.count(b"{") <= MAX_JSON_DEPTH or _nested_at_most(
        value, MAX_JSON_DEPTH
    )


def _nested_at_most(value: Any, limit: int) -> bool:
    """Whether no container in `value` lies deeper than `limit`; visits containers only."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 >= limit:
                    return False
                stack.append((child, depth + 1))
    return True


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]')


def json_text_too_deep(text: str) -> str | None:
    """Where JSON text first nests deeper than MAX_JSON_DEPTH, found without parsing it:
    for text that `json.loads` refuses with RecursionError. None if it does not."""
    stack: list[list[Any]] = []  # per open container: [is_object, current key or index]
    expecting_key = False
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token[0] == '"':
            if expecting_key and stack and stack[-1][0]:
                stack[-1][1] = token[1:-1]
                expecting_key = False
        elif token in "[{":
            if len(stack) >= MAX_JSON_DEPTH:
                return _path_text([str(key) for _, key in stack])
            stack.append([token == "{", "" if token == "{" else 0])
            expecting_key = token == "{"
        elif token in "]}":
            if stack:
                stack.pop()
            expecting_key = False
        elif stack and not stack[-1][0]:  # a comma in a list
            stack[-1][1] += 1
        else:  # a comma in an object
            expecting_key = True
    return None


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("response text is blank")
    return value


# JSON Schema for text that is not blank: what `_not_blank` checks, for the OpenAPI schema.
NOT_BLANK = {"minLength": 1, "pattern": r"\S"}
# External ids and model names are varchar(200) columns.
NAME_MAX = 200
BIGINT_MAX = 2**63 - 1

# A candidate's text: at least one character that is not whitespace.
ResponseText = Annotated[
    str, Field(min_length=1, json_schema_extra=NOT_BLANK), AfterValidator(_not_blank)
]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1)


def _chat_schema(message_ref: dict[str, Any], description: str) -> dict[str, Any]:
    return {"type": "array", "items": message_ref, "minItems": 1, "description": description}


CHAT_RULE = "Chat turns, ending with a user turn."


def _row_json_schema(schema: dict[str, Any]) -> None:
    """What `one_prompt_form` and the before-validators accept, in JSON Schema: the prompt
    is non-blank text or a chat, given as `prompt` or as `messages`, never both."""
    properties = schema["properties"]
    # pydantic's own reference to Message (it rewrites references it made, not ours)
    message = properties["messages"]["anyOf"][0]["items"]
    properties["id"] = {
        "oneOf": [{"type": "string", "maxLength": NAME_MAX}, {"type": "integer"}],
        "description": "External id, unique in the project; an integer is read as text.",
    }
    properties["prompt"] = {
        "oneOf": [{"type": "string", **NOT_BLANK}, _chat_schema(message, CHAT_RULE)],
        "description": "The prompt: text, or chat turns (TRL's conversational form).",
    }
    properties["messages"] = _chat_schema(message, f"{CHAT_RULE} Another name for a chat `prompt`.")
    properties["responses"]["items"] = {
        "oneOf": [{"type": "string", **NOT_BLANK}, properties["responses"]["items"]],
    }
    schema["oneOf"] = [{"required": ["prompt"]}, {"required": ["messages"]}]


class ImportedResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: ResponseText
    model: str = Field(default="", max_length=NAME_MAX)
    generation_params: dict[str, Any] = Field(default_factory=dict)


class ImportedRow(BaseModel):
    """One prompt and its candidate responses, in the row shape of a Hugging Face data set.

    `prompt` is text or a list of chat messages (TRL's conversational form); `messages`
    is accepted as another name for the chat. Responses are strings or objects with
    `text` and `model`.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra=_row_json_schema)

    id: str = Field(default="", max_length=NAME_MAX)
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
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return "" if value is None else value

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


def _candidate_json_schema(schema: dict[str, Any]) -> None:
    """`names_one_prompt` in JSON Schema: exactly one of the two prompt references, each
    given as a value (null counts as absent, so the schema leaves it out)."""
    properties = schema["properties"]
    for name in ("prompt_id", "prompt_external_id"):
        properties[name] = properties[name]["anyOf"][0]
    schema["oneOf"] = [{"required": ["prompt_id"]}, {"required": ["prompt_external_id"]}]


class CandidateRow(BaseModel):
    """One response to add to a prompt already in the project, named by id or external id."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_candidate_json_schema)

    # a bigint key, as a JSON integer (not "5", 5.0 or true)
    prompt_id: int | None = Field(default=None, ge=1, le=BIGINT_MAX, strict=True)
    prompt_external_id: str | None = Field(default=None, min_length=1, max_length=NAME_MAX)
    text: ResponseText
    model: str = Field(default="", max_length=NAME_MAX)
    generation_params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def names_one_prompt(self) -> CandidateRow:
        if (self.prompt_id is None) == (self.prompt_external_id is None):
            raise ValueError("give either 'prompt_id' or 'prompt_external_id'")
        return self
