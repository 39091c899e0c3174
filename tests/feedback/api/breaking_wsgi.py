"""The project's WSGI app for test_export_stream_failure, in a worker where exports fail on a
prompt containing BREAK, after each row went out on its own."""

# config.wsgi first: it sets Django up, which the models feedback.exports imports need.
from config.wsgi import application
from feedback import exports
from feedback.io import export_jsonl

__all__ = ["application"]

export_jsonl.BLOCK_BYTES = 1
_prompt_chars = exports._prompt_chars


def _breaking(prompt: exports.PromptRef) -> int:
    if "BREAK" in prompt.text:
        raise RuntimeError("simulated failure in the middle of an export")
    return _prompt_chars(prompt)


exports._prompt_chars = _breaking
