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
        ("default_backend: x\nbackends:\n  x:\n    type: sentiment\n", "backends.x.model: Field required"),
        ("default_backend: h\nbackends:\n  h: {type: human, raters: {alice: short}}\n",
         "backends.h.raters: Value error, rater 'alice''s token: must be one word of at least 16 characters"),
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


def test_cli_config_show_takes_the_file_as_an_argument_like_check(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("default_backend: vader\nbackends:\n  vader: {type: lexicon}\n")
    for args in (["config", "show", str(path)], ["config", "show", "--config", str(path)]):
        result = subprocess.run([sys.executable, "-m", "reward_service", *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert config_module.parse(result.stdout, "shown", environ={}).default_backend == "vader"


KEY = "key-0123456789abcdef"


def _with(auth: str = "{}", raters: str = "{}") -> str:
    return f"default_backend: h\nauth: {auth}\nbackends:\n  h: {{type: human, raters: {raters}}}\n"


def test_inline_keys_and_tokens_are_stripped_like_the_key_file():
    settings = config_module.parse(_with(auth=f'{{api_keys: ["{KEY}\\n"], admin_keys: [" admin-{KEY} "]}}',
                                         raters='{alice: "alice-token-0123456 "}'), "c.yaml", environ={})
    assert settings.auth.api_keys == [KEY] and settings.auth.admin_keys == [f"admin-{KEY}"]
    assert settings.backends["h"].raters == {"alice": "alice-token-0123456"}
    with pytest.raises(ConfigError, match=r"auth.api_keys: Value error, api_keys\[0\]: must be one word") as info:
        config_module.parse(_with(auth='{api_keys: ["two words-0123456789"]}'), "c.yaml", environ={})
    assert "two words" not in str(info.value)  # the key is never echoed


@pytest.mark.parametrize("auth, raters, expected", [
    ("{}", "{alice: same-token-0123456, bob: same-token-0123456}", "raters h.alice and h.bob have the same token"),
    (f"{{api_keys: [{KEY}]}}", f"{{alice: {KEY}}}", "rater 'alice''s token is also an API or admin key"),
    (f"{{admin_keys: [{KEY}]}}", f"{{alice: {KEY}}}", "rater 'alice''s token is also an API or admin key"),
])
def test_a_rater_token_is_one_raters_and_no_key(auth, raters, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        config_module.parse(_with(auth=auth, raters=raters), "c.yaml", environ={})
    assert KEY not in str(info.value) and "same-token" not in str(info.value)


def test_a_rater_token_in_a_key_file_stops_the_app(tmp_path):
    from reward_service.app import create_app

    keys = tmp_path / "keys"
    keys.write_text(f"{KEY}\n")
    settings = config_module.parse(_with(auth=f"{{api_keys_file: {keys}}}", raters=f"{{alice: {KEY}}}"),
                                   "c.yaml", environ={})
    with pytest.raises(ValueError, match="a rater token is also an API or admin key"):
        create_app(settings)
