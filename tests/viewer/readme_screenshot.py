"""Take the README's viewer screenshot (docs/viewer.png) from real run folders.

    python tests/viewer/readme_screenshot.py RUN [RUN ...] --output docs/viewer.png

Starts ``sine-fields view`` on a free port, opens it in headless Chromium (the same helpers as the
browser test), waits for the meshes, saves the page and stops the viewer with Ctrl-C (SIGINT).
Not collected by pytest (the name does not start with ``test_``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from viewer_browser import chromium_missing_reason, chromium_page, free_port, viewer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--output", type=Path, default=Path("docs/viewer.png"))
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=820)
    args = parser.parse_args()
    reason = chromium_missing_reason()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    with viewer([*map(str, args.runs), "--port", str(free_port())]) as proc:
        url = proc.wait_for_url(timeout=120)
        with chromium_page(args.width, args.height) as page:
            page.goto(url)
            page.get_by_text(f"Metrics: {args.runs[-1].name}").wait_for(timeout=120_000)
            time.sleep(4)  # meshes arrive as GLB and are decoded after the panel text
            args.output.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.output))
        proc.interrupt(timeout=30)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
