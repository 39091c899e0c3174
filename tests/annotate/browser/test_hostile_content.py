"""Hostile text in every field a person or a model can fill renders inert and readable.

One set of rows carries every payload at once (script, handlers, SVG and MathML mutation
XSS, javascript:/data: links, page-covering CSS, htmx attributes, Django template syntax,
bidi overrides, zero-width characters, a megabyte text and a 200,000-character line); the
test visits each page that shows them once and fails on any script run, dialog, request to
another origin or to the payloads' own path, live attribute made from the payload, bidi
override leaking out of its text, or page wider than the window.
"""

import pytest

from feedback.models import Job, JudgeOutput, Project
from feedback.services import FeedbackInput, FreeTextInput, PairwiseInput, submission_create
from tests.factories import (
    AspectFactory,
    JudgeFactory,
    ProjectFactory,
    SpanLabelFactory,
    UserFactory,
    task_with_responses,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RLO = "\u202e"  # right-to-left override, left open on purpose
ZERO_WIDTH = "a\u200bb\u200cc\u200dd\ufeffe\u2066"

# Short enough for names (100 characters); every live form would set window.__pwned.
SHORT = "<img src=x onerror=__pwned=1>{{ request }}" + RLO + "evil" + ZERO_WIDTH

PAYLOAD = "\n\n".join(
    [
        "# Heading <script>window.__pwned='script'</script>",
        "<img src=x onerror=\"window.__pwned='img'\"> <svg onload=\"window.__pwned='svg'\"></svg>",
        "<math><mtext><table><mglyph><style><img src=x onerror=\"window.__pwned='mxss'\">",
        "[js](javascript:window.__pwned='md') [JS](JaVaScRiPt:alert(1)) "
        "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==) "
        "<javascript:alert(1)> [vb](vbscript:msgbox(1))",
        "![pixel](https://evil.example/pixel.png) [off site](https://evil.example/page)",
        "<a href=\"javascript:window.__pwned='a'\">raw link</a>",
        '<div style="position:fixed;inset:0;background:red;z-index:9999">cover</div>',
        '<div hx-get="/__pwned__/" hx-trigger="load">htmx</div>',
        '<form action="/__pwned__/"><button formaction="javascript:alert(1)">go</button></form>',
        "<iframe src=\"javascript:alert(1)\"></iframe><object data='data:text/html,x'></object>",
        "{{ request }} {% debug %} {{ settings.SECRET_KEY }} {% load static %}",
        f"Right-to-left {RLO}override left open and zero width {ZERO_WIDTH} İstanbul 🎉",
        "| a | b |\n|---|---|\n| " + "T" * 3000 + " | <b onclick=alert(1)>x</b> |",
        "```html\n<script>alert(1)</script>" + "C" * 3000 + "\n```",
        "L" * 200_000,
    ]
)
MEGABYTE = PAYLOAD + "\n\n" + ("words and more words " * 50_000)


def _project(tag: str, **kinds: bool) -> Project:
    flags = dict.fromkeys(
        ["collects_pairwise", "collects_rating", "collects_ranking", "collects_spans"], False
    )
    return ProjectFactory(
        name=f"{tag} " + "N" * 120 + SHORT,
        guidelines=PAYLOAD,
        collects_free_text=False,
        show_judge_suggestions=True,
        **{**flags, **kinds},
    )


@pytest.fixture
def hostile():
    """Three projects (one per task layout) full of payloads; a judge's output and job."""
    pair = _project("pair", collects_pairwise=True)
    single = _project("single", collects_rating=True, collects_spans=True)
    single.collects_free_text = True
    single.save()
    ranked = _project("list", collects_ranking=True)
    AspectFactory(project=single, name="A" * 30 + SHORT, rubric=PAYLOAD)
    SpanLabelFactory(project=single, name="S" * 30 + SHORT, description=PAYLOAD)

    chat = {
        "text": "",
        "messages": [
            {"role": "system", "content": PAYLOAD},
            {"role": "user", "content": "Hi <i>there</i> " + SHORT},
            {"role": "assistant", "content": "Hello " + SHORT},
            {"role": "user", "content": PAYLOAD},
        ],
        "external_id": "E" * 60 + SHORT,
    }
    pair_task = task_with_responses(pair, "pair", 2, texts=[PAYLOAD, MEGABYTE], **chat)
    single_task = task_with_responses(single, "single", 1, texts=[PAYLOAD], text=PAYLOAD)
    task_with_responses(ranked, "list", 3, texts=[PAYLOAD, SHORT, MEGABYTE], text=PAYLOAD)

    judge = JudgeFactory(name="J" * 60 + SHORT)
    submission_create(
        task=pair_task, judge=judge, feedback=FeedbackInput(pairwise=PairwiseInput("B", 2))
    )
    submission_create(
        task=single_task,
        judge=judge,
        feedback=FeedbackInput(
            texts=[FreeTextInput("critique", PAYLOAD, single_task.links.get().response_id)]
        ),
    )
    job = Job.objects.create(
        project=pair, kind=Job.Kind.JUDGE, status=Job.Status.FAILED, error=PAYLOAD
    )
    output = JudgeOutput.objects.create(
        job=job, task=pair_task, judge=judge, kind="pairwise", raw_output=MEGABYTE,
        parse_error=PAYLOAD,
    )  # fmt: skip
    response = pair_task.links.order_by("position").first().response
    return {
        "workspaces": [pair, single, ranked],
        "reports": [
            "/",
            f"/projects/{pair.pk}/jobs/",
            f"/projects/{pair.pk}/judges/quality/",
            f"/projects/{single.pk}/agreement/",
            f"/projects/{pair.pk}/dashboard/",
            f"/projects/{single.pk}/dashboard/",
            f"/projects/{single.pk}/configure/",
            "/projects/new/",
        ],
        "admin": [
            "/admin/feedback/project/",
            f"/admin/feedback/project/{single.pk}/change/",
            "/admin/feedback/prompt/",
            f"/admin/feedback/prompt/{pair_task.prompt_id}/change/",
            "/admin/feedback/response/",
            f"/admin/feedback/response/{response.pk}/change/",
            "/admin/feedback/judgeoutput/",
            f"/admin/feedback/judgeoutput/{output.pk}/change/",
        ],
    }


# Run in the page: what a payload made live, and user text whose bidi override leaks out.
FINDINGS = """() => {
  const found = [];
  for (const el of document.querySelectorAll("*")) {
    for (const attr of el.attributes) {
      const name = attr.name.toLowerCase(), value = attr.value.toLowerCase().trim();
      const live = name.startsWith("on") || name.startsWith("hx-") || name.startsWith("data-hx")
        || name === "style" || name === "srcdoc";
      if (live && (value.includes("pwned") || value.includes("alert") || value.includes("fixed")))
        found.push(`${el.tagName} ${name}=${attr.value.slice(0, 60)}`);
      // Our charts are SVG images in data: URIs (nothing in an image runs).
      const chart = el.matches("img.chart") && value.startsWith("data:image/svg+xml;base64,");
      if (["href", "src", "action", "formaction", "data", "xlink:href"].includes(name)
          && /^(javascript|data|vbscript):/.test(value.replace(/\\s/g, "")) && !chart)
        found.push(`${el.tagName} ${name}=${attr.value.slice(0, 60)}`);
    }
    if (["IFRAME", "OBJECT", "EMBED", "MATH", "MGLYPH"].includes(el.tagName)
        || el.tagName.toLowerCase() === "svg" && el.closest("main"))
      found.push(`element ${el.tagName}`);
  }
  // User text sits in an isolating element (<bdi>, or dir="auto" on a block), so an
  // override it leaves open cannot reorder the page's own text after it.
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!/[\\u202a-\\u202e\\u2066-\\u2069]/.test(node.data)) continue;
    if (parent.closest("bdi, [dir], textarea, option, title, script")) continue;
    found.push(`bidi control not isolated in ${parent.outerHTML.slice(0, 80)}`);
  }
  return found;
}"""


# The innermost elements that reach past the window's right edge, to say what overflows.
WIDEST = """() => {
  const past = (el) => el.getBoundingClientRect().right > window.innerWidth + 1;
  return [...document.body.querySelectorAll("*")]
    .filter((el) => past(el) && ![...el.children].some(past))
    .slice(0, 3)
    .map((el) => `${el.tagName.toLowerCase()}.${[...el.classList].join(".")}`);
}"""


def _check_page(page, path: str, *, admin: bool = False, slack: int = 1) -> list[str]:
    problems = [f"{path}: {finding}" for finding in page.evaluate(FINDINGS)]
    if admin:  # Django's own markup: its bidi handling and phone layout are Django's
        problems = [p for p in problems if "bidi control" not in p]
    else:
        # Escaping keeps hx-* out of the page; should any slip in, htmx may not run script.
        config = page.evaluate("[htmx.config.allowEval, htmx.config.allowScriptTags]")
        if config != [False, False]:
            problems.append(f"{path}: htmx allowEval, allowScriptTags = {config}")
    for width in (1280,) if admin else (1280, 400):
        page.set_viewport_size({"width": width, "height": 800})
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if scroll > inner + slack:
            wide = page.evaluate(WIDEST)
            problems.append(f"{path}: {scroll}px wide in a {inner}px window: {wide}")
    page.set_viewport_size({"width": 1280, "height": 800})
    return problems


def test_hostile_text_renders_inert_and_fits_on_every_page(live_server, page, hostile):
    page.set_default_timeout(15000)
    origin = live_server.url
    events: list[str] = []
    page.on("dialog", lambda dialog: (events.append(f"dialog {dialog.message}"), dialog.dismiss()))
    page.on("pageerror", lambda error: events.append(f"page error {error}"))

    def on_request(request):
        url = request.url
        if not (url == origin or url.startswith(origin + "/")) or "pwned" in url:
            events.append(f"request to {url}")

    page.on("request", on_request)
    UserFactory(username="boss", is_staff=True, is_superuser=True)
    page.goto(f"{origin}/accounts/login/")
    page.fill("input[name=username]", "boss")
    page.fill("input[name=password]", "pw")
    page.click("button[type=submit]")
    page.wait_for_load_state()

    problems: list[str] = []
    for project in hostile["workspaces"]:
        path = f"/projects/{project.pk}/"
        page.goto(origin + path)
        page.wait_for_selector("#task-card[data-ready]")
        card = page.locator("#task-card")
        assert "<script>window.__pwned='script'</script>" in card.inner_text()
        assert "{{ request }} {% debug %}" in card.inner_text()
        page.click("[data-open-dialog=guidelines]")
        assert "<script>window.__pwned='script'</script>" in page.inner_text("#guidelines")
        page.keyboard.press("Escape")
        problems += _check_page(page, path)
    for path in hostile["reports"]:
        page.goto(origin + path)
        problems += _check_page(page, path)
    for path in hostile["admin"]:
        page.goto(origin + path)
        # Django's tabular inlines on the project page are ~50px wider than 1280px even
        # with plain text in every field; what matters here is that hostile text adds nothing.
        slack = 64 if path.startswith("/admin/feedback/project/") and "change" in path else 1
        problems += _check_page(page, path, admin=True, slack=slack)
    page.wait_for_timeout(300)  # let anything a payload scheduled (load triggers, timers) run

    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert events == []
    assert problems == [], "\n".join(problems)
