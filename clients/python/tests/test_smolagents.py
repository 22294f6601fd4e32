"""A real smolagents CodeAgent whose code runs in Moat. Skipped when smolagents is absent.

Only the language model is scripted (it answers with fixed code blocks); the agent loop,
smolagents' tool and variable shipping, its final-answer patch and the server are real.
"""

from __future__ import annotations

import inspect
import io
from collections.abc import Iterator

import pytest

try:
    from smolagents import CodeAgent, Tool
    from smolagents.agent_types import AgentImage
    from smolagents.models import ChatMessage, MessageRole, Model
    from smolagents.memory import ActionStep
    from smolagents.monitoring import AgentLogger, LogLevel
    from smolagents.remote_executors import RemotePythonExecutor
except ImportError as e:
    # The real cause: smolagents itself, or one of its dependencies (PIL, for one).
    pytest.skip(f"smolagents cannot be imported: {e} (pip install smolagents)", allow_module_level=True)

from conftest import Server  # noqa: E402
from moat_client import MoatClient, SessionNotFoundError  # noqa: E402
from moat_client.smolagents_executor import MoatExecutor  # noqa: E402


class ScriptedModel(Model):
    """Answers each step with the next code block, like a model that always does the right thing."""

    def __init__(self, *code_blocks: str) -> None:
        super().__init__(model_id="scripted")
        self.replies = list(code_blocks)

    def generate(self, messages, stop_sequences=None, **kwargs) -> ChatMessage:  # noqa: ANN001
        self.calls = getattr(self, "calls", 0) + 1
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
        # Tools and variables ship smolagents' way: MoatExecutor only marks those calls as the
        # program's (no import rule) and refuses managed agents before delegating.
        assert "super().send_tools(tools)" in inspect.getsource(MoatExecutor.send_tools)
        assert "super().send_variables(variables)" in inspect.getsource(MoatExecutor.send_variables)
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


def test_a_code_agent_answers_on_a_moat_without_numpy_and_pillow(offline_server: Server) -> None:
    """Offline, without a mirror: the final answer and the tools need neither package."""
    with MoatExecutor(offline_server.url, offline_server.token, logger=AgentLogger(level=LogLevel.OFF)) as ex:
        model = ScriptedModel("c = to_celsius(fahrenheit=212)", "final_answer({'celsius': c})")
        agent = CodeAgent(tools=[Celsius()], model=model, executor=ex, verbosity_level=LogLevel.OFF)
        assert agent.run("At what temperature does water boil, in Celsius?") == {"celsius": 100.0}
        assert ex.installed_packages == []
        assert all(s.error is None for s in action_steps(agent))


def test_agent_cleanup_deletes_the_session(server: Server, numpy_and_pillow: None) -> None:
    client = MoatClient(server.url, server.token)
    executor = MoatExecutor(client=client, logger=AgentLogger(level=LogLevel.OFF))
    with CodeAgent(tools=[], model=ScriptedModel("final_answer(1)"), executor=executor) as agent:
        assert agent.run("One.") == 1
    with pytest.raises(SessionNotFoundError):
        client.get_session(executor.session_id)


def action_steps(agent: CodeAgent) -> list[ActionStep]:
    return [s for s in agent.memory.steps if isinstance(s, ActionStep)]


@pytest.mark.parametrize("reset", [True, False], ids=["reset", "no-reset"])
def test_a_second_run_on_the_same_agent_gets_its_final_answer(executor: MoatExecutor, reset: bool) -> None:
    model = ScriptedModel(
        "x = 20\nfinal_answer(x + 1)",
        "final_answer(x * 2)",  # state kept in the session between runs
        "final_answer({'third': (3,)})",
    )
    agent = CodeAgent(tools=[], model=model, executor=executor, verbosity_level=LogLevel.OFF)
    assert agent.run("First.") == 21
    assert agent.run("Second.", reset=reset) == 40
    assert agent.run("Third.", reset=reset) == {"third": (3,)}
    assert model.calls == 3, "each run took one step: no final answer failed"


def test_the_agent_keeps_its_own_final_answer_tool_and_can_be_saved_after_runs(
    executor: MoatExecutor,
) -> None:
    from smolagents.default_tools import FinalAnswerTool

    model = ScriptedModel(*["final_answer('ok')"] * 3)
    agent = CodeAgent(tools=[], model=model, executor=executor, verbosity_level=LogLevel.OFF)
    for _ in range(3):
        assert agent.run("Again.") == "ok"
    assert type(agent.tools["final_answer"]) is FinalAnswerTool, "the patch is for the sandbox only"
    codes = [t["code"] for t in agent.to_dict()["tools"]]
    assert any("class FinalAnswerTool" in c and "def forward(self, answer" in c for c in codes), codes
    assert "__source__" not in vars(FinalAnswerTool.forward)


def test_managed_agents_under_a_moat_executor_fail_before_the_model_is_called(
    executor: MoatExecutor,
) -> None:
    helper = CodeAgent(tools=[], model=ScriptedModel(), name="helper", description="Helps.")
    model = ScriptedModel("final_answer(helper(task='hi'))")
    manager = CodeAgent(
        tools=[], model=model, managed_agents=[helper], executor=executor, verbosity_level=LogLevel.OFF
    )
    with pytest.raises(ValueError, match=r"cannot ship managed agents \(helper\).*host_tools=True"):
        manager.run("Delegate.")
    assert getattr(model, "calls", 0) == 0


API_KEY = "sk-weather-1b2c3d4e5f"


class Weather(Tool):
    """A tool that needs an API key: with host_tools it runs here, the key never leaves."""

    name = "weather"
    description = "Current temperature in a city, in degrees Celsius."
    inputs = {"city": {"type": "string", "description": "the city"}}
    output_type = "number"

    def forward(self, city: str) -> float:
        assert API_KEY  # a real tool would send it to its API
        return {"Paris": 21.5, "Oslo": 4.0}[city]


def test_host_tools_run_a_tool_with_a_key_here_called_from_moat(
    server: Server, numpy_and_pillow: None
) -> None:
    with MoatExecutor(server.url, server.token, host_tools=True) as moat:
        model = ScriptedModel(
            "temps = {c: weather(city=c) for c in ['Paris', 'Oslo']}\nprint(temps)",
            "import os\nleak = repr(dict(os.environ)) + repr(globals())\n"
            "final_answer([temps['Paris'] - temps['Oslo'], 'sk-weather' in leak, "
            "'class Weather' in leak])",
        )
        agent = CodeAgent(tools=[Weather()], model=model, executor=moat, verbosity_level=LogLevel.OFF)
        assert agent.run("How much warmer is Paris than Oslo?") == [17.5, False, False]
        # The tool's state stays in the session, as any variable.
        assert moat.client.run("temps", session_id=moat.session_id).result == {"Paris": 21.5, "Oslo": 4.0}


def test_host_tools_let_a_managed_agent_work(server: Server, numpy_and_pillow: None) -> None:
    helper = CodeAgent(
        tools=[Celsius()], model=ScriptedModel("final_answer(to_celsius(fahrenheit=212))"),
        name="helper", description="Converts temperatures.", verbosity_level=LogLevel.OFF,
    )
    with MoatExecutor(server.url, server.token, host_tools=True) as moat:
        model = ScriptedModel("report = helper(task='Boil water, in Celsius.')\nfinal_answer(report)")
        manager = CodeAgent(
            tools=[], model=model, managed_agents=[helper], executor=moat,
            verbosity_level=LogLevel.OFF,
        )
        report = manager.run("Delegate.")
    assert "100.0" in str(report), report


def test_a_failing_host_tool_is_an_error_the_model_reads(server: Server, numpy_and_pillow: None) -> None:
    with MoatExecutor(server.url, server.token, host_tools=True) as moat:
        model = ScriptedModel(
            "weather(city='Atlantis')",
            "try:\n    weather(city='Atlantis')\nexcept ToolError as e:\n    final_answer(str(e))",
        )
        agent = CodeAgent(tools=[Weather()], model=model, executor=moat, verbosity_level=LogLevel.OFF)
        answer = agent.run("Atlantis?")
        assert "KeyError" in answer and "Atlantis" in answer, answer
        first = agent.memory.steps[1]
        assert "ToolError" in str(first.error), first.error


def test_a_managed_agent_runs_its_code_in_moat_under_a_local_manager(
    server: Server, numpy_and_pillow: None
) -> None:
    with MoatExecutor(server.url, server.token) as moat:
        helper = CodeAgent(
            tools=[Celsius()], model=ScriptedModel("final_answer(to_celsius(fahrenheit=212))"),
            executor=moat, name="helper", description="Converts temperatures.",
            verbosity_level=LogLevel.OFF,
        )
        manager = CodeAgent(
            tools=[], model=ScriptedModel("report = helper(task='Boil.')\nfinal_answer(report)"),
            managed_agents=[helper], verbosity_level=LogLevel.OFF,
        )
        answer = manager.run("Ask the helper.")
        assert "100.0" in answer
        assert MoatClient(server.url, server.token).get_session(moat.session_id).details["calls"] > 0


def test_stderr_reaches_the_model_in_the_observations(executor: MoatExecutor) -> None:
    model = ScriptedModel(
        "import warnings\nwarnings.warn('rounding may be off')\nprint('done')", "final_answer(1)"
    )
    agent = CodeAgent(tools=[], model=model, executor=executor, verbosity_level=LogLevel.OFF)
    agent.run("Warn.")
    observations = action_steps(agent)[0].observations
    assert "done" in observations
    assert "Printed to stderr:" in observations and "rounding may be off" in observations


def test_authorized_imports_are_refused_and_allowed_in_the_sandbox(
    server: Server, numpy_and_pillow: None
) -> None:
    imports = ["json"]
    model = ScriptedModel("import os", "import json\nfinal_answer(json.dumps([1]))")
    with MoatExecutor(server.url, server.token, additional_authorized_imports=imports) as ex:
        agent = CodeAgent(
            tools=[Celsius()], model=model, executor=ex, additional_authorized_imports=imports,
            verbosity_level=LogLevel.OFF,
        )
        assert agent.run("Import.") == "[1]"
    refused = str(action_steps(agent)[0].error)
    expected = sorted({*agent.authorized_imports})
    assert f"Import of os is not allowed. Authorized imports are: {expected}" in refused


def test_nothing_is_printed_at_log_level_off(server: Server, numpy_and_pillow: None, capsys) -> None:  # noqa: ANN001
    executor = MoatExecutor(server.url, server.token)
    model = ScriptedModel("1 / 0", "import sys\nprint('x', file=sys.stderr)\nfinal_answer(2)")
    with CodeAgent(tools=[], model=model, executor=executor, verbosity_level=LogLevel.OFF) as agent:
        assert agent.run("Quietly.") == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "")


def test_each_error_is_printed_once_at_log_level_info(server: Server, numpy_and_pillow: None) -> None:
    from rich.console import Console

    printed = io.StringIO()
    logger = AgentLogger(level=LogLevel.INFO, console=Console(file=printed, width=300, color_system=None))
    executor = MoatExecutor(server.url, server.token)
    model = ScriptedModel("ratio = 1 / 0", "final_answer('ok')")
    with CodeAgent(tools=[], model=model, executor=executor, logger=logger) as agent:
        assert agent.run("Divide.") == "ok"
    text = printed.getvalue()
    assert text.count("ZeroDivisionError: division by zero") == 1, text
    assert "Initializing executor" not in text and "Moat session" not in text


def test_a_saved_agent_gets_its_moat_executor_back_when_given_one(server: Server) -> None:
    from smolagents import InferenceClientModel

    imports = ["json"]
    with MoatExecutor(server.url, server.token, additional_authorized_imports=imports) as first:
        agent = CodeAgent(
            tools=[Celsius()], model=InferenceClientModel(model_id="any/model"), executor=first,
            additional_authorized_imports=imports, verbosity_level=LogLevel.OFF,
        )
        saved = agent.to_dict()
    assert saved["executor_type"] == "local", "the executor itself is not saved"
    with MoatExecutor(
        server.url, server.token, additional_authorized_imports=saved["authorized_imports"]
    ) as executor:
        loaded = CodeAgent.from_dict(saved, executor=executor)
        assert loaded.python_executor is executor
        assert "json" in loaded.authorized_imports and "json" in executor.authorized_imports
        with pytest.raises(Exception, match="Import of os is not allowed"):
            executor("import os")


def test_a_managed_agent_gets_additional_args_and_a_decorated_tool_its_optional_input(
    server: Server, numpy_and_pillow: None
) -> None:
    from smolagents import tool

    @tool
    def convert(value: float, unit: str | None = None) -> float:
        """Converts Fahrenheit to Celsius, or to Kelvin.

        Args:
            value: degrees Fahrenheit
            unit: "K" for Kelvin; Celsius when omitted
        """
        celsius = (value - 32) * 5 / 9
        return round(celsius + 273.15 if unit == "K" else celsius, 2)

    helper = CodeAgent(
        tools=[], model=ScriptedModel("final_answer(sum(readings) / len(readings))"),
        name="averager", description="Averages readings.", verbosity_level=LogLevel.OFF,
    )
    with MoatExecutor(server.url, server.token, host_tools=True) as moat:
        model = ScriptedModel(
            "k = convert(212, unit='K')\nc = convert(value=32)\n"
            "report = averager(task='Average the readings.', additional_args={'readings': [1, 2, 6]})\n"
            "final_answer([k, c, '3.0' in report, convert.__module__])"
        )
        manager = CodeAgent(
            tools=[convert], model=model, managed_agents=[helper], executor=moat,
            verbosity_level=LogLevel.OFF,
        )
        assert manager.run("Convert and average.") == [373.15, 0.0, True, "moat_tools"]
    # The helper ran in this process, with its own (local) executor, and saw the readings.
    assert helper.state["readings"] == [1, 2, 6]
