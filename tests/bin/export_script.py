"""Export a project through the API and write the file to stdout: run in a subprocess
against whichever database DATABASE_URL names (the original or a restored copy)."""

import sys

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.urls import reverse  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402


def main(username: str, project_id: int, shape: str) -> None:
    client = APIClient()
    client.force_authenticate(get_user_model().objects.get(username=username))
    response = client.get(reverse("api:project-export", args=[project_id]), {"shape": shape})
    assert response.status_code == 200, response.status_code
    sys.stdout.buffer.write(b"".join(response.streaming_content))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
