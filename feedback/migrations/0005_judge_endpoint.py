"""Judges name an endpoint of the operator's registry instead of storing a URL.

Each OpenAI-compatible judge gets the name of the registered endpoint with its base URL.
One whose URL is not registered gets `unregistered-<host>`: it runs again once the operator
registers that name (no job can start it before), so nobody's URL is trusted by default.
`api_key_env` leaves the judges' parameters: the registry names each endpoint's key.
"""

import re
from urllib.parse import urlsplit

from django.conf import settings
from django.db import migrations, models


def _registered() -> dict[str, str]:
    endpoints = getattr(settings, "INFERENCE_ENDPOINTS", {}) or {}
    return {
        str(entry.get("base_url", "")).rstrip("/"): name
        for name, entry in endpoints.items()
        if isinstance(entry, dict)
    }


def urls_to_endpoints(apps, schema_editor) -> None:
    Judge = apps.get_model("feedback", "Judge")
    registered = _registered()
    for judge in Judge.objects.all():
        if judge.backend == "openai":
            url = judge.base_url.rstrip("/")
            host = re.sub(r"[^A-Za-z0-9.-]+", "-", urlsplit(url).netloc) or "unknown"
            judge.endpoint = registered.get(url, f"unregistered-{host}"[:100])
        if isinstance(judge.parameters, dict):
            judge.parameters.pop("api_key_env", None)
        judge.save(update_fields=["endpoint", "parameters"])


def endpoints_to_urls(apps, schema_editor) -> None:
    Judge = apps.get_model("feedback", "Judge")
    urls = {name: url for url, name in _registered().items()}
    for judge in Judge.objects.filter(backend="openai"):
        judge.base_url = urls.get(judge.endpoint, f"http://{judge.endpoint}.invalid/v1")
        judge.save(update_fields=["base_url"])


class Migration(migrations.Migration):
    dependencies = [
        ("feedback", "0004_display_seed_spans_checked"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="judge",
            name="judge_openai_needs_url",
        ),
        migrations.AddField(
            model_name="judge",
            name="endpoint",
            field=models.CharField(
                blank=True,
                help_text="For the OpenAI-compatible backend: a name from the operator's "
                "INFERENCE_ENDPOINTS, which also says where the key is read from.",
                max_length=100,
            ),
        ),
        migrations.RunPython(urls_to_endpoints, endpoints_to_urls),
        migrations.RemoveField(
            model_name="judge",
            name="base_url",
        ),
        migrations.AddConstraint(
            model_name="judge",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("backend", "openai"), _negated=True),
                    models.Q(("endpoint", ""), _negated=True),
                    _connector="OR",
                ),
                name="judge_openai_needs_endpoint",
                violation_error_message="The OpenAI-compatible backend needs an endpoint.",
            ),
        ),
    ]
