"""`report-consumer show UUID --html FILE`: one self-contained page, opened in headless Chromium
(Debian's `chromium`, installed by scripts/bootstrap): it renders, with one chart per judged number."""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import sys
from pathlib import Path

import pytest

from consumer.comparisons import load_rules
from consumer.report import with_verdict
from consumer.settings import Settings
from consumer.verdict import verdict_for
from tests.support.consumer import settings_env
from tests.support.verdicts import Levels, history, hours_ago, report_of, store

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if shutil.which("apt-get"):
        pytest.fail("chromium is not installed: run scripts/bootstrap (as root it installs Debian's chromium)")
    pytest.skip("chromium is not installed and there is no apt-get to install it with")


async def browse(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """Headless Chromium with a fresh profile, bounded in time."""
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    process = await asyncio.create_subprocess_exec(
        chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), 120)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def test_the_html_page_renders_a_chart_per_judged_number_in_chromium(es, settings: Settings, unique, tmp_path):
    rng = random.Random(21)
    await store(es, settings, history(unique, 30, rng))
    report = report_of(f"{unique}-now", hours_ago(1), Levels.noisy(rng, p99=1.25))
    report = with_verdict(report, await verdict_for(es, settings.report_index, settings.acks_index, load_rules(),
                                                    report, settings.retry))
    await store(es, settings, [report])
    judged = [entry["name"] for entry in report["verdict"]["numbers"]]
    assert len(judged) == 5

    page = tmp_path / "report.html"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "consumer.cli", "show", report["uuid"], "--html", str(page), env=settings_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0 and f"wrote {page}" in err.decode() and b"verdict  regression" in out
    html = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html.replace('href="https://grafana', ""))  # nothing fetched

    screenshot = tmp_path / "report.png"
    code, _, err = await browse(tmp_path, f"--screenshot={screenshot}", "--window-size=1200,1600", page.as_uri())
    assert code == 0, err[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000

    code, dom, err = await browse(tmp_path, "--dump-dom", page.as_uri())
    assert code == 0, err[-2000:]
    charts = re.findall(r'<svg class="chart"[^>]*data-number="([^"]+)"', dom)
    assert [name.replace("&amp;", "&") for name in charts] == judged
    assert dom.count('class="this-run"') == 5 and dom.count('class="change-point"') >= 1
    assert 'id="verdict">regression<' in dom
