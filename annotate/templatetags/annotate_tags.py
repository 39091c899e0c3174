"""Markdown for prompts, responses, rubrics and guidelines: rendered, then sanitised.

Model output is untrusted. markdown-it runs with raw HTML off, so `<script>` in a response
is shown as text; nh3 then removes anything outside a small allow-list (no event handlers,
no `javascript:` links, no images that could call out) as a second line of defence.

A text is rendered once: the sanitised HTML is kept in the cache under the text's hash
(shared by the web processes where the cache is Redis), and in each process's memory.
"""

import hashlib
import json
from datetime import timedelta
from functools import lru_cache

import nh3
from django import template
from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

register = template.Library()

_markdown = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])

ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "s", "del", "code", "pre", "blockquote",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "a",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "code": {"class"}, "ol": {"start"}}
URL_SCHEMES = {"http", "https", "mailto"}

# Part of the cache key, so that no HTML rendered under other rules is served: bump the
# number when the renderer changes; the allow-lists count in by themselves.
_RULES = (
    sorted(ALLOWED_TAGS),
    sorted((tag, sorted(names)) for tag, names in ALLOWED_ATTRIBUTES.items()),
    sorted(URL_SCHEMES),
)
RENDERING = "md1-" + hashlib.sha256(repr(_RULES).encode()).hexdigest()[:12]
RENDERED_CACHE_SECONDS = 7 * 24 * 3600


@lru_cache(maxsize=4096)
def render_markdown(text: str) -> str:
    key = f"prefhub:{RENDERING}:{hashlib.sha256(text.encode()).hexdigest()}"
    html = cache.get(key)
    if html is None:
        html = _render(text)
        cache.set(key, html, RENDERED_CACHE_SECONDS)
    return html


def _render(text: str) -> str:
    html = _markdown.render(text)
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )


@register.filter
def markdown(text: str) -> SafeString:
    """Render Markdown to safe HTML; see the module docstring for what is kept."""
    return mark_safe(render_markdown(text or ""))  # sanitised by nh3 in render_markdown


@register.filter
def as_json(value: object) -> str:
    """JSON text for a data attribute (autoescaped there): htmx swaps in no script tags
    (`allowScriptTags` is off), so a card's data cannot travel in a json_script."""
    return json.dumps(value, ensure_ascii=False, cls=DjangoJSONEncoder)


@register.filter
def duration(value: timedelta | float | None) -> str:
    """A timedelta (or seconds) as "41 s", "2 min 5 s" or "3 h 12 min"; "" for None.

    Django's timesince counts whole minutes, and a 41-second job "took 0 minutes".
    """
    if value is None:
        return ""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, seconds = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
