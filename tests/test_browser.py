"""What a user sees, in a real browser: the gallery page opened from disk, and the Dagster UI.

Playwright drives Debian's Chromium (/usr/bin/chromium, installed by .ci/run; Playwright's own browser
downloads are never used). `dagster dev` is started in its own session on a free 127.0.0.1 port and
stopped by its process group.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import GeneratedDataset
from e2e_helpers import EXAMPLES, FAST_ENGINE, clean_environ, free_port, stop_group
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from wan_pipeline.outputs.gallery import GALLERY_PATH

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: how long a slow, shared CI machine may take to start the server and run the first automation tick
READY_S = 300


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).is_file(), "Chromium is missing: `apt-get install -y chromium` (.ci/run does it)"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _page(browser: Browser, errors: list[str]) -> Page:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(msg.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


def test_gallery_in_the_browser(browser: Browser, generated_dataset: GeneratedDataset) -> None:
    errors: list[str] = []
    page = _page(browser, errors)
    page.goto((generated_dataset.storage / GALLERY_PATH).as_uri())

    cards = page.locator("article.card")
    expect(cards).to_have_count(generated_dataset.outputs + generated_dataset.failed)
    images = page.locator("article.card img")
    expect(images).to_have_count(generated_dataset.outputs)
    widths = images.evaluate_all("imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
    assert len(widths) == 5 and all(w == 256 for w in widths)  # every thumbnail decoded
    expect(page.locator('[data-total="outputs"]')).to_have_text("5")
    expect(page.locator('[data-total="failed"]')).to_have_text("1")
    expect(page.locator('[data-total="credits"]')).to_have_text("25")

    page.select_option("#status-filter", "failed")
    expect(page.locator("article.card:visible")).to_have_count(1)
    expect(page.locator("article.card:visible")).to_contain_text("content_policy_violation")
    expect(page.locator("#shown")).to_have_text("1")
    page.select_option("#status-filter", "")
    page.select_option("#mode-filter", "image_edit")
    expect(page.locator("article.card:visible")).to_have_count(2)
    expect(page.locator("article.card:visible img")).to_have_count(2)
    page.select_option("#mode-filter", "")
    expect(page.locator("article.card:visible")).to_have_count(6)

    # A thumbnail opens the stored file (a relative link, so it works from disk).
    first = page.locator("article.card a").first
    target = (generated_dataset.storage / "report" / str(first.get_attribute("href"))).resolve()
    assert target.is_file() and target.is_relative_to(generated_dataset.storage / "media")
    assert errors == []


@contextlib.contextmanager
def serving(command: list[str], env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`command` (a web server on 127.0.0.1) in its own session until /server_info answers; then stopped."""
    with (cwd / "server.log").open("wb") as log:
        proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    port = command[command.index("-p" if "-p" in command else "--port") + 1]
    try:
        deadline = time.monotonic() + READY_S
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((cwd / "server.log").read_text(errors="replace")[-3000:]) from None
                time.sleep(0.5)
        yield proc
    finally:
        stop_group(proc)


def session_processes(session: int) -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process in a session (a server and what it started)."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            stat, cmdline = (entry / "stat").read_text(), (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue  # not a process, or gone
        state, ppid, _, sid = stat.rsplit(")", 1)[1].split()[:4]  # fields after the name: state ppid pgrp session
        if int(sid) == session and state != "Z" and cmdline:  # an exited process not yet reaped runs nothing
            found[int(entry.name)] = (int(ppid), cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def session_commands(session: int) -> list[str]:
    """The command lines of every process in a session."""
    return [command for _, command in session_processes(session).values()]


@contextlib.contextmanager
def dagster_dev(specs: list[Path], home: Path, cwd: Path) -> Iterator[str]:
    port = free_port()
    env = clean_environ()
    env.update(FAST_ENGINE)
    env.update(DAGSTER_HOME=str(home), WAN_PIPELINE_SPECS=os.pathsep.join(map(str, specs)))
    dagster = Path(sys.executable).parent / "dagster"
    with serving([str(dagster), "dev", "-m", "wan_pipeline.definitions", "-h", "127.0.0.1", "-p", str(port)],
                 env, cwd):
        yield f"http://127.0.0.1:{port}"


def _skip_community_dialog(page: Page) -> None:
    skip = page.get_by_role("button", name="Skip")
    with contextlib.suppress(Exception):  # shown once per browser profile, after the first render
        skip.wait_for(timeout=15_000)
        skip.click()


def test_dagster_ui_shows_a_generated_dataset(
    browser: Browser, generated_dataset: GeneratedDataset, tmp_path: Path
) -> None:
    # A second dataset that was never run, loaded beside the generated one.
    fresh = tmp_path / "fresh"
    shutil.copytree(EXAMPLES, fresh)
    (fresh / "demo.yaml").write_text(
        (fresh / "demo.yaml").read_text(encoding="utf-8").replace("../wan_output/demo", "out"), encoding="utf-8")
    errors: list[str] = []
    with dagster_dev([generated_dataset.spec_path, fresh / "demo.yaml"], generated_dataset.dagster_home,
                     tmp_path) as base:
        page = _page(browser, errors)
        page.set_default_timeout(60_000)
        page.goto(f"{base}/assets/shots/media")
        _skip_community_dialog(page)

        # Every output of the latest partition is visible in place, with its full SHA-256 and gallery link.
        expect(page.get_by_text("preview_v0_0")).to_be_visible()
        expect(page.get_by_text("preview_v1_0")).to_be_visible()
        previews = page.locator('img[src^="data:image/webp"]')
        expect(previews).to_have_count(2)
        assert all(w >= 64 for w in previews.evaluate_all("imgs => imgs.map(i => i.naturalWidth)"))
        digests = {hashlib.sha256(p.read_bytes()).hexdigest()
                   for p in (generated_dataset.storage / "media").rglob("*.png")}
        body = page.inner_text("body")
        assert any(d in body for d in digests), "no full SHA-256 of a stored file on the page"
        expect(page.locator('a[href*="report/gallery.html#out-"]').first).to_be_attached()

        # Credits are shown; USD says why it is unknown on a host without a published price.
        page.goto(f"{base}/assets/shots/generations")
        expect(page.get_by_text("credits_final")).to_be_visible()
        expect(page.get_by_text("unknown: no published price")).to_be_visible()

        # The never-run group does not look healthy: its prompts show up as missing partitions once the
        # refresh sensor has validated the table (no money is spent for that).
        deadline = time.monotonic() + READY_S
        while True:
            page.goto(f"{base}/assets/demo/media?view=partitions")
            try:
                expect(page.get_by_text("Missing (12)")).to_be_visible(timeout=10_000)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
    assert errors == [], errors


def test_wan_pipeline_ui_from_venv_bin_without_activation(browser: Browser, tmp_path: Path) -> None:
    """The README's un-activated form: `.venv/bin/wan-pipeline ui SPEC` with no venv on PATH."""
    spec = shutil.copytree(EXAMPLES, tmp_path / "examples") / "demo.yaml"
    port = free_port()
    env = clean_environ()
    env.update(DAGSTER_HOME=str(tmp_path / "home"), PATH="/usr/bin:/bin")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    wan_pipeline = Path(sys.executable).parent / "wan-pipeline"
    errors: list[str] = []
    with serving([str(wan_pipeline), "ui", str(spec), "--port", str(port)], env, tmp_path) as server:
        # `dagster dev`'s daemon is ours (a UI backfill starts within a second), the webserver Dagster's
        commands = session_commands(server.pid)
        assert any(" -m wan_pipeline.cli daemon " in c for c in commands), commands
        assert not any("dagster._daemon" in c for c in commands), commands
        assert any(" -m dagster_webserver " in c for c in commands), commands
        page = _page(browser, errors)
        page.goto(f"http://127.0.0.1:{port}/assets/demo/prompt_table")
        _skip_community_dialog(page)
        expect(page.get_by_text("Validated, planned prompt table of dataset 'demo'")).to_be_visible(timeout=60_000)
    assert errors == [], errors


@pytest.mark.parametrize("to_group", [True, False], ids=["ctrl-c", "kill-int"])
def test_ctrl_c_ends_a_ui_session_cleanly(tmp_path: Path, to_group: bool) -> None:
    """Ctrl-C is how a `wan-pipeline ui` session ends: exit 0, no stack trace, no "aborted", nothing left running —
    whether the interrupt reaches the whole process group (a terminal's Ctrl-C) or only the command.

    On a new instance the refresh sensor validates the demo's prompt table at once, in a run; the interrupt
    comes once that run has ended. (An interrupt while Dagster's daemon is launching a run makes it log the
    launch's failure with a traceback: a terminal's Ctrl-C reaches the code server too, which refuses the run —
    Dagster's own `dagster dev` does the same; and a run in progress when only the command is interrupted
    goes on to its end.)"""
    env = clean_environ()
    env.update(DAGSTER_HOME=str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    wan_pipeline = Path(sys.executable).parent / "wan-pipeline"
    with serving([str(wan_pipeline), "ui", "--port", str(free_port())], env, tmp_path) as proc:
        _wait_for_the_first_runs_to_end(tmp_path / "home")
        (os.killpg if to_group else os.kill)(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 0
        # the webserver and our daemon are stopped; Dagster's code servers (started with `--heartbeat`) and what
        # they started (multiprocessing's resource tracker, once a run was launched) are left to stop themselves
        # when the heartbeats stop (their timeout is 45 s) — and they do
        assert _outside_code_servers(session_processes(proc.pid)) == []
        deadline = time.monotonic() + 120
        while left := session_commands(proc.pid):
            assert time.monotonic() < deadline, left
            time.sleep(1)
    output = (tmp_path / "server.log").read_text(errors="replace")
    assert "Traceback" not in output and "aborted" not in output, output[-3000:]


def _wait_for_the_first_runs_to_end(home: Path) -> None:
    """Until the instance at `home` has a run and every run in it has ended."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(home))
    deadline = time.monotonic() + READY_S
    try:
        while True:
            runs = instance.get_runs()
            if runs and all(run.is_finished for run in runs):
                return
            assert time.monotonic() < deadline, [(run.job_name, run.status) for run in runs]
            time.sleep(0.5)
    finally:
        instance.dispose()


def _outside_code_servers(processes: dict[int, tuple[int, str]]) -> list[str]:
    """The command lines of `processes` that are neither a code server nor started by one."""

    def under_code_server(pid: int) -> bool:
        while pid in processes:
            parent, command = processes[pid]
            if " --heartbeat " in command:
                return True
            pid = parent
        return False

    return [command for pid, (_, command) in processes.items() if not under_code_server(pid)]
