"""The markdown filter renders Markdown and code and lets no script or handler through."""

from html.parser import HTMLParser

from annotate.templatetags.annotate_tags import markdown


def test_markdown_and_code_blocks_are_rendered():
    html = markdown("**bold** and `x`\n\n```python\nprint(1)\n```")
    assert "<strong>bold</strong>" in html
    assert '<pre><code class="language-python">print(1)' in html


def test_raw_html_in_model_output_is_escaped():
    html = markdown("<script>alert(1)</script><img src=x onerror=alert(1)>")
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_javascript_links_are_not_links():
    html = markdown("[a](javascript:alert(1)) [b](JaVaScRiPt:alert(1)) [c](https://example.org)")
    assert 'href="javascript' not in html.lower()
    assert html.count("<a ") == 1
    assert 'href="https://example.org"' in html
    assert 'rel="noopener noreferrer nofollow"' in html


def test_data_and_vbscript_links_are_not_links():
    html = markdown(
        "[a](data:text/html;base64,PHNjcmlwdD4=) [b](data:image/png;base64,AAAA) "
        "<data:text/html,x> [c](vbscript:msgbox(1))"
    )
    assert "href" not in html


def test_htmx_style_and_mutation_xss_markup_stay_text():
    html = markdown(
        '<div hx-get="/admin/" hx-trigger="load" style="position:fixed;inset:0">x</div>\n\n'
        "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>\n\n"
        '<svg onload="alert(1)"></svg>'
    )
    assert "<div" not in html and "<math" not in html and "<svg" not in html
    assert "&lt;div hx-get=" in html and "&lt;svg onload=" in html


def test_a_link_title_cannot_add_attributes():
    html = markdown('[x](https://example.org "t\\" onmouseover=\\"alert(1)")')
    attributes: list[str] = []

    class Links(HTMLParser):
        def handle_starttag(self, tag, attrs):
            attributes.extend(name for name, _ in attrs)

    Links().feed(html)
    assert sorted(attributes) == ["href", "rel", "title"]


def test_template_syntax_is_shown_as_written():
    assert "{{ request }} {% debug %}" in markdown("{{ request }} {% debug %}")
