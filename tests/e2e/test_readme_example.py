"""The README's Python example works as written, from an application folder of its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from gladly_sync.simulator import DEFAULT_API_TOKEN, Simulator

from tests.e2e.conftest import ROOT, Cli, write_config
from tests.e2e.test_cli_e2e import open_conversations

pytestmark = pytest.mark.e2e

README_CONVERSATION = "HXRqKC5GSV-jAlq0-sxYTA"
# Modules an application may well have; the example must import ours, never these.
APP_MODULES = ("storage", "sync", "simulator", "config")


def readme_python_example() -> str:
    """The README's one ```python block."""
    (block,) = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    return block


def make_app(folder: Path) -> None:
    """An application folder whose own storage.py, sync.py, ... refuse to be imported by us."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in APP_MODULES:
        (folder / f"{name}.py").write_text(
            f"raise ImportError('the application\\'s own {name}.py was imported')\n"
        )


@pytest.fixture
def app(sim: Simulator, tmp_path: Path) -> Cli:
    """The application's folder: its config.yaml, and a store a real `sync --full` filled."""
    folder = tmp_path / "app"
    make_app(folder)
    config = write_config(folder, sim.base_url, escalation=sim.world.inbox_id("Escalations"))
    cli = Cli(config=config, db_path=folder / "store" / "gladly.duckdb", token=DEFAULT_API_TOKEN)
    cli.ok("sync", "--full")
    return cli


def run_example(folder: Path, code: str) -> subprocess.CompletedProcess:
    """``python example.py`` in the application's folder, with no API token and no config variable."""
    (folder / "example.py").write_text(code)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GLADLY_", "PYTHONPATH"))}
    return subprocess.run(
        [sys.executable, "example.py"], cwd=folder, capture_output=True, text=True, timeout=120, env=env
    )


class TestReadmeExample:
    def test_example_queues_its_actions_and_they_reach_gladly(self, sim: Simulator, app: Cli):
        """From an app folder with its own storage.py/sync.py, no token: it queues what a drain delivers."""
        answer = open_conversations(sim)[0]
        code = readme_python_example().replace(README_CONVERSATION, answer)
        code += "print(context['conversation']['id'], queued.row['status'])\n"
        code += "print(store.outbox_by_key('applied-123')['status'])\n"
        done = run_example(app.config.parent, code)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [answer, "pending", "pending"]

        app.ok("drain")
        agent_items = sim.world.items_by_agent(answer)
        notes = [i["content"]["body"] for i in agent_items if i["content"]["type"] == "CONVERSATION_NOTE"]
        assert sorted(notes) == ["Customer asked for a supervisor.", "Refund issued by Applied."]
        assert [i for i in agent_items if i["content"]["type"] != "CONVERSATION_NOTE"]  # the reply
        assert sim.world.conversation(answer)["inboxId"] == sim.world.inbox_id("Escalations")
        assert {row["status"] for row in app.json("outbox", "list")} == {"sent"}

    def test_the_example_names_the_conversation_this_test_replaces(self):
        """The README example uses the conversation id this test substitutes (so it runs what is written)."""
        assert README_CONVERSATION in readme_python_example()

    def test_app_modules_would_break_a_wrong_import(self, tmp_path: Path):
        """In the app folder, `import storage` gets the app's module: the example proves ours is not that."""
        make_app(tmp_path)
        done = run_example(tmp_path, "import storage\n")
        assert done.returncode != 0
        assert "the application's own storage.py was imported" in done.stderr


class TestStoreWithoutToken:
    def test_from_config_needs_no_token(self, app: Cli):
        """Store.from_config reads a config whose token is ${GLADLY_API_TOKEN} with that variable unset."""
        done = run_example(
            app.config.parent,
            "from gladly_sync import Store\nprint(Store.from_config('config.yaml').escalation_inbox)\n",
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip()
