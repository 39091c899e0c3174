"""gunicorn settings for test_export_stream_failure: the project's own, plus a worker in
which exports fail on a prompt containing BREAK, after each row went out on its own."""

import runpy
from pathlib import Path

globals().update(
    {
        name: value
        for name, value in runpy.run_path(
            str(Path(__file__).resolve().parents[3] / "config" / "gunicorn.conf.py")
        ).items()
        if not name.startswith("__")
    }
)


def post_worker_init(worker) -> None:
    import feedback.exports as exports
    import feedback.io.export_jsonl as export_jsonl

    export_jsonl.BLOCK_BYTES = 1
    real = exports._prompt_chars

    def breaking(prompt):
        if "BREAK" in prompt.text:
            raise RuntimeError("simulated failure in the middle of an export")
        return real(prompt)

    exports._prompt_chars = breaking
