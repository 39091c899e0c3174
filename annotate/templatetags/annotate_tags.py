"""Markdown for prompts, responses, rubrics and guidelines: rendered, then sanitised.

Model output is untrusted. markdown-it runs with raw HTML off, so `<script>` in a response
is shown as text; nh3 then removes anything outside a small allow-list (no event handlers,
no `javascript:` links, no images that could call out) as a second line of defence.
"""

import json
from functools import lru_cache

import nh3
from django import template
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


@lru_cache(maxsize=4096)
def render_markdown(text: str) -> str:
    html = _markdown.render(text)
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
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
