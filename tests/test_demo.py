"""The README's first command: `bin/demo` installs, sets up SQLite and serves the demo."""

import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def demo_server(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "CELERY_BROKER_URL": "",
        "PYTHONUNBUFFERED": "1",
    }
    # A fresh machine: bin/demo sets what it needs itself (the test settings put a key here).
    for name in ("DJANGO_SETTINGS_MODULE", "DJANGO_SECRET_KEY", "DJANGO_DEBUG"):
        env.pop(name, None)
    # No model jobs: minutes of SmolLM2 on a CPU; test_demo_command.py seeds them with a
    # tiny model.
    process = subprocess.Popen(
        ["bin/demo", "--addrport", f"127.0.0.1:{port}", "--no-jobs"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    banner = []
    try:
        for line in process.stdout:
            banner.append(line)
            if "Quit the server with" in line:
                break
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(base + "/accounts/login/", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        yield base, "".join(banner)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.slow
def test_demo_prints_its_url_and_login_and_serves_the_annotator_pages(demo_server):
    base, banner = demo_server
    assert f"Open {base}/" in banner
    assert "annotator / demo" in banner

    session = requests.Session()
    login_page = session.get(base + "/accounts/login/", timeout=5)
    assert login_page.status_code == 200 and "Log in" in login_page.text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text)[1]
    home = session.post(
        base + "/accounts/login/",
        data={"username": "annotator", "password": "demo", "csrfmiddlewaretoken": token},
        headers={"Referer": base + "/accounts/login/"},
        timeout=5,
    )
    assert home.status_code == 200 and "Demo: assistant answers" in home.text
    project_url = re.search(r'href="(/projects/\d+/)"', home.text)[1]
    project_page = session.get(base + project_url, timeout=5)
    assert project_page.status_code == 200
    assert "Demo: assistant answers" in project_page.text


@pytest.mark.slow
def test_the_demo_admin_sees_the_simulated_past_on_the_dashboard(demo_server):
    base, _ = demo_server
    session = requests.Session()
    login_page = session.get(base + "/accounts/login/", timeout=5)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text)[1]
    home = session.post(
        base + "/accounts/login/",
        data={"username": "admin", "password": "demo", "csrfmiddlewaretoken": token},
        headers={"Referer": base + "/accounts/login/"},
        timeout=5,
    )
    dashboard = re.search(r'href="(/projects/\d+/dashboard/)"', home.text)[1]
    page = session.get(base + dashboard, timeout=60)
    assert page.status_code == 200
    assert page.text.count('src="data:image/svg+xml;base64,') >= 5
    assert "maya" in page.text and "No tasks yet." not in page.text
