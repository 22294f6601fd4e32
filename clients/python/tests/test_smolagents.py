"""A real smolagents CodeAgent whose code runs in Moat. Skipped when smolagents is absent.

Only the language model is scripted (it answers with fixed code blocks); the agent loop,
smolagents' tool and variable shipping, its final-answer patch and the server are real.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

smolagents = pytest.importorskip(
    "smolagents", reason="smolagents is not installed (pip install smolagents to run these)"
)
from smolagents import CodeAgent, Tool  # noqa: E402
from smolagents.agent_types import AgentImage  # noqa: E402
from smolagents.models import ChatMessage, MessageRole, Model  # noqa: E402
from smolagents.memory import ActionStep  # noqa: E402
from smolagents.monitoring import AgentLogger, LogLevel  # noqa: E402
from smolagents.remote_executors import RemotePythonExecutor  # noqa: E402

from conftest import Server  # noqa: E402
from moat_client import MoatClient, SessionNotFoundError  # noqa: E402
from moat_client.smolagents_executor import MoatExecutor  # noqa: E402


class ScriptedModel(Model):
    """Answers each step with the next code block, like a model that always does the right thing."""

    def __init__(self, *code_blocks: str) -> None:
        super().__init__(model_id="scripted")
        self.replies = list(code_blocks)

    def generate(self, messages, stop_sequences=None, **kwargs) -> ChatMessage:  # noqa: ANN001
        code = self.replies.pop(0)
        return ChatMessage(role=MessageRole.ASSISTANT, content=f"Thought: next step.\n<code>\n{code}\n</code>")


class Celsius(Tool):
    name = "to_celsius"
    description = "Converts a temperature from Fahrenheit to Celsius."
    inputs = {"fahrenheit": {"type": "number", "description": "degrees Fahrenheit"}}
    output_type = "number"

    def forward(self, fahrenheit: float) -> float:
        return round((fahrenheit - 32) * 5 / 9, 2)


@pytest.fixture
def executor(server: Server, numpy_and_pillow: None) -> Iterator[MoatExecutor]:
    """smolagents' final_answer tool imports numpy and PIL, so a Moat without them cannot serve it."""
    ex = MoatExecutor(server.url, server.token, logger=AgentLogger(level=LogLevel.OFF))
    yield ex
    ex.cleanup()


def test_the_executor_is_a_smolagents_remote_executor(server: Server) -> None:
    with MoatExecutor(server.url, server.token, logger=AgentLogger(level=LogLevel.OFF)) as executor:
        assert isinstance(executor, RemotePythonExecutor)
        assert MoatExecutor.send_tools is RemotePythonExecutor.send_tools, "tools ship smolagents' way"
        assert MoatExecutor.send_variables is RemotePythonExecutor.send_variables
        executor.send_variables({"when": (2026, 11), "tags": {"a"}})  # smolagents' SafeSerializer
        assert executor("when[0], sorted(tags)").output == [2026, ["a"]]


def test_a_code_agent_runs_tools_and_returns_the_final_answer(executor: MoatExecutor) -> None:
    model = ScriptedModel(
        "c = to_celsius(fahrenheit=212)\nprint('boiling at', c)",
        "final_answer({'celsius': c, 'pair': (1, 2), 'note': 'ok ✓'})",
    )
    agent = CodeAgent(tools=[Celsius()], model=model, executor=executor, verbosity_level=LogLevel.OFF)
    answer = agent.run("At what temperature does water boil, in Celsius?")
    assert answer == {"celsius": 100.0, "pair": (1, 2), "note": "ok ✓"}
    first_step = next(s for s in agent.memory.steps if isinstance(s, ActionStep))
    assert "boiling at 100.0" in first_step.observations


def test_an_error_reaches_the_model_and_the_agent_recovers(executor: MoatExecutor) -> None:
    model = ScriptedModel("ratio = 1 / 0", "final_answer('recovered')")
    agent = CodeAgent(tools=[], model=model, executor=executor, verbosity_level=LogLevel.OFF)
    assert agent.run("Divide.") == "recovered"
    failed = next(s for s in agent.memory.steps if isinstance(s, ActionStep))
    assert "ZeroDivisionError" in str(failed.error) and "ratio = 1 / 0" in str(failed.error)


def test_additional_arguments_reach_the_code_as_variables(executor: MoatExecutor) -> None:
    model = ScriptedModel("final_answer(sum(numbers) * factor)")
    agent = CodeAgent(tools=[], model=model, executor=executor, verbosity_level=LogLevel.OFF)
    assert agent.run("Scale the sum.", additional_args={"numbers": [1, 2, 3], "factor": 10}) == 60


def test_an_image_final_answer_is_a_pil_image(executor: MoatExecutor) -> None:
    import PIL.Image

    model = ScriptedModel("from PIL import Image\nfinal_answer(Image.new('RGB', (3, 5), 'green'))")
    agent = CodeAgent(tools=[], model=model, executor=executor, verbosity_level=LogLevel.OFF)
    answer = agent.run("Draw.")
    assert isinstance(answer, AgentImage)  # smolagents wraps every image answer
    raw = answer.to_raw()
    assert isinstance(raw, PIL.Image.Image) and raw.size == (3, 5)


def test_agent_cleanup_deletes_the_session(server: Server, numpy_and_pillow: None) -> None:
    client = MoatClient(server.url, server.token)
    executor = MoatExecutor(client=client, logger=AgentLogger(level=LogLevel.OFF))
    with CodeAgent(tools=[], model=ScriptedModel("final_answer(1)"), executor=executor) as agent:
        assert agent.run("One.") == 1
    with pytest.raises(SessionNotFoundError):
        client.get_session(executor.session_id)
