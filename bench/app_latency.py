"""How soon the web app is heard: from pressing Generate to the live player playing, in a real browser.

    python bench/app_latency.py [--model demo] [--duration 10] [--rounds 3]

Starts `python app.py` on a free port, opens it in headless Chromium (Debian's, as tests/test_app.py), and for each
round types a prompt, presses Generate and records, from the click: when the live player starts playing (its
currentTime moves), and when the final clip appears. Beside them, from the clip's sidecar, what the pipeline
itself took (the page's line, from the sidecar): its first piece of audio (`MusicGen.generate_stream`) and the
whole generation. The difference is
what the page adds (Gradio's queue, the AAC encoding of the stream, the browser's buffering).
"""

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
PLAYING = "(() => { const a = document.querySelector('#live audio'); return a !== null && a.currentTime > 0; })()"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "app.py", "--model", args.model, "--port", str(port)], cwd=ROOT)
    try:
        url = wait_for(f"http://127.0.0.1:{port}/")
        rows = measure(url, args.duration, args.rounds)
    finally:
        server.terminate()
        server.wait()
    print(f"{args.model}, {args.duration:g} s clips, {args.rounds} rounds (median), load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for name in rows[0]:
        print(f"  {name:<42} {statistics.median(row[name] for row in rows):6.2f} s")


def wait_for(url: str, timeout: float = 180.0) -> str:
    """`url` once the app answers there."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            urllib.request.urlopen(url, timeout=2)
            return url
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the app did not answer at {url} within {timeout:g} s")


def measure(url: str, duration: float, rounds: int) -> list[dict[str, float]]:
    from playwright.sync_api import sync_playwright

    rows = []
    with sync_playwright() as playwright:
        options = ["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=options)
        page = browser.new_page()
        for _ in range(rounds):
            page.goto(url)  # a fresh page each round: no player left playing from the last one
            page.locator("#prompt textarea").fill("An uplifting jazz song that makes your head shake")
            page.locator("#duration input[type=number]").fill(f"{duration:g}")
            page.locator("#generate").click()
            clicked = time.perf_counter()
            page.wait_for_function(PLAYING, polling=20, timeout=120_000)
            playing = time.perf_counter() - clicked
            page.wait_for_function("document.querySelector('#seed-used').innerText.includes('Seed')", polling=20,
                                   timeout=600_000)
            final = time.perf_counter() - clicked
            first_audio, generate = pipeline_times(page.locator("#seed-used").inner_text())
            rows.append({"browser: live player starts playing": playing, "pipeline: first audio": first_audio,
                         "browser: final clip shown": final, "pipeline: whole generation": generate})
        browser.close()
    return rows


def pipeline_times(line: str) -> tuple[float, float]:
    """(first audio, whole generation) in seconds from the page's line "Seed 42: 10.0 s of audio in 3.4 s (the
    first after 0.6 s)", which the app takes from the clip's sidecar (`seconds_taken`)."""
    match = re.search(r"of audio in ([\d.]+) s \(the first after ([\d.]+) s\)", line)
    if match is None:
        raise SystemExit(f"cannot read the times from the page's line {line!r}")
    return float(match.group(2)), float(match.group(1))


if __name__ == "__main__":
    main()
