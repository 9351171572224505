"""The README's Python snippets run as written, and its set-up commands are the ones CI runs."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_the_readme_has_snippets():
    assert len(SNIPPETS) >= 3


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"snippet{i}" for i in range(len(SNIPPETS))])
def test_readme_snippet_runs_as_written(snippet):
    exec(compile(snippet, "README.md", "exec"), {"__name__": "readme"})


def test_ci_runs_the_readme_test_command():
    command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert command == 'pip install torch==2.13.0 -e ".[all]" && python -m pytest'
    assert command in README.splitlines()
    assert 'pip install torch==2.13.0 -e ".[all]" && compressm demo' in README.splitlines()
