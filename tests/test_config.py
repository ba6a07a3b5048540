import subprocess
import sys

import pytest

from reward_service import config as config_module
from reward_service.config import ConfigError


def test_embedded_default_names_sentiment_and_lexicon():
    settings = config_module.load(environ={})
    assert settings.default_backend == "sentiment"
    assert {"sentiment", "lexicon"} <= set(settings.backends)
    assert settings.backends["sentiment"].model == "sentiment-minilm-rt"
    assert settings.server.host == "127.0.0.1"


def test_environment_overrides_switch_the_default_backend():
    settings = config_module.load(environ={"REWARD_SERVICE__DEFAULT_BACKEND": "lexicon",
                                           "REWARD_SERVICE__BACKENDS__SENTIMENT__RUNTIME": "torch",
                                           "REWARD_SERVICE__SERVER__PORT": "9123"})
    assert settings.default_backend == "lexicon"
    assert settings.backends["sentiment"].runtime == "torch"
    assert settings.server.port == 9123


def test_config_file_from_environment_variable(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("default_backend: vader\nbackends:\n  vader:\n    type: lexicon\n")
    settings = config_module.load(environ={"REWARD_SERVICE_CONFIG": str(path)})
    assert settings.default_backend == "vader"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("default_backend: [unclosed", "not valid YAML"),
        ("- a list", "top level must be a mapping"),
        ("default_backend: nope\nbackends:\n  lexicon:\n    type: lexicon\n", "'nope' is not among the backends (lexicon)"),
        ("default_backend: x\nbackends:\n  x:\n    type: magic\n", "backends.x"),
        ("default_backend: x\nbackends:\n  x:\n    type: sentiment\n", "backends.x.sentiment.model: Field required"),
        ("default_backend: x\nbackends:\n  x:\n    type: lexicon\n    colour: red\n", "colour: Extra inputs are not permitted"),
        ("default_backend: x\nbackends:\n  x:\n    type: sentiment\n    model: m\n    runtime: tpu\n", "runtime"),
    ],
)
def test_bad_config_gives_a_clear_message(text, expected):
    with pytest.raises(ConfigError) as info:
        config_module.parse(text, "bad.yaml", environ={})
    assert expected in str(info.value)
    assert "bad.yaml" in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        config_module.load(tmp_path / "absent.yaml", environ={})


def test_cli_rejects_a_bad_file_with_exit_code_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("default_backend: x\nbackends: {}\n")
    result = subprocess.run([sys.executable, "-m", "reward_service", "config", "check", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "at least one backend" in result.stderr


def test_cli_config_show_prints_the_embedded_defaults():
    result = subprocess.run([sys.executable, "-m", "reward_service", "config", "show"], capture_output=True, text=True)
    assert result.returncode == 0
    assert config_module.parse(result.stdout, "shown", environ={}).default_backend == "sentiment"
