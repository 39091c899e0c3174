"""The markdown filter renders Markdown and code and lets no script or handler through."""

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
