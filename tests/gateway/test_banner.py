"""What `loraflow up` prints can be copied whole from an 80-column terminal: the key and the snippet are never cut."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from gateway.cli.banner import print_banner
from gateway.keys import new_key
from gateway.settings import EngineSettings, Settings


def rendered(settings: Settings, key: str | None, scheduler_log: Path | None = None) -> list[str]:
    # A colour terminal, as a person runs it; the recording is the text they see.
    console = Console(file=io.StringIO(), width=80, record=True, force_terminal=True, color_system="truecolor")
    print_banner(console, settings, key, scheduler_log)
    return console.export_text(styles=False).splitlines()


def test_the_key_and_the_snippet_fit_80_columns_and_paste_as_they_are(tmp_path: Path):
    key = new_key()
    var_dir = tmp_path / "a-rather-long-project-directory-name" / "var"
    settings = Settings(var_dir=var_dir, port=18000, admin_key="a", secret_key="s")
    lines = rendered(settings, key, var_dir / "logs" / "scheduler.log")

    assert max(len(line) for line in lines) <= 80, "\n".join(line for line in lines if len(line) > 80)
    assert key in lines  # alone on its line: a triple-click copies exactly the key
    start = lines.index("from openai import OpenAI")
    code = "\n".join(line.rstrip() for line in lines[start:])
    compile(code, "snippet", "exec")  # pasted whole, it is valid Python
    assert f'    api_key="{key}",' in code.splitlines()
    assert 'model="smollm2-135m-instruct"' in code and "http://127.0.0.1:18000/v1" in code


def test_an_attached_gateway_without_a_demo_key_shows_a_placeholder():
    settings = Settings(engine=EngineSettings(urls=["http://10.0.0.5:8000"]), admin_key="a", secret_key="s")
    lines = rendered(settings, None)
    assert any("attached to http://10.0.0.5:8000" in line for line in lines)
    assert '    api_key="<your key>",' in lines
