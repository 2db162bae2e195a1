import pytest

from agorabench.config import ParamsError, load_params
from tests.conftest import REPO, write_params


def test_shipped_params_load():
    params = load_params(REPO / "params.yaml")
    assert params.benchmark_generators and all(g in params.generators for g in params.benchmark_generators)
    assert params.generation.sampling.stop == ["[END]"]


def test_paper_profile_loads():
    params = load_params(REPO / "profiles/paper.yaml")
    assert params.generation.num_instances == 10_000


def _error(tmp_path, **overrides) -> str:
    path = write_params(tmp_path / "params.yaml", "http://127.0.0.1:1", **overrides)
    with pytest.raises(ParamsError) as e:
        load_params(path)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_wrong_backend_names_field_value_and_choices(tmp_path):
    msg = _error(tmp_path, **{"generators.fake.backend": "opena"})
    assert "generators.fake.backend" in msg and "'opena'" in msg
    assert all(b in msg for b in ("openai", "anthropic", "local"))


def test_unknown_field_is_rejected(tmp_path):
    msg = _error(tmp_path, **{"generation.temperatur": 0.7})
    assert "generation.temperatur" in msg and "unknown field" in msg


def test_out_of_range_value(tmp_path):
    msg = _error(tmp_path, **{"generation.sampling.top_p": 1.5})
    assert "generation.sampling.top_p" in msg and "1.5" in msg


def test_benchmark_generator_must_be_declared(tmp_path):
    msg = _error(tmp_path, benchmark_generators=["nope"])
    assert "nope" in msg and "fake" in msg


def test_a_benchmark_in_both_extra_and_benchmarks_is_named(tmp_path):
    msg = _error(tmp_path, **{"evaluation.benchmarks": {"general": ["ifeval"]}, "evaluation.extra": ["ifeval"]})
    assert "evaluation" in msg and "ifeval" in msg and "list each benchmark once" in msg
    # canary: the same benchmark on one side only loads
    path = write_params(tmp_path / "ok.yaml", "http://127.0.0.1:1",
                        **{"evaluation.benchmarks": {"general": ["ifeval"]}, "evaluation.extra": ["alpacaeval"]})
    assert load_params(path).evaluation.extra == ["alpacaeval"]


def test_valid_override_is_accepted_canary(tmp_path):
    # The same mechanism with a legal value must load: the failures above are about the values.
    path = write_params(tmp_path / "params.yaml", "http://127.0.0.1:1", **{"generation.sampling.top_p": 0.5})
    assert load_params(path).generation.sampling.top_p == 0.5


def test_missing_api_key_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("FAKE_API_KEY", raising=False)
    params = load_params(write_params(tmp_path / "params.yaml", "http://127.0.0.1:1"))
    with pytest.raises(ParamsError, match="FAKE_API_KEY"):
        params.generator("fake").api_key("fake")
    monkeypatch.setenv("FAKE_API_KEY", "k")
    assert params.generator("fake").api_key("fake") == "k"


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("generators: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "absent.yaml")


def test_generator_names_cannot_hold_dots(tmp_path):
    # DVC addresses params as generators.NAME: a dot in NAME would split it (a real bug we hit).
    path = write_params(tmp_path / "params.yaml", "http://127.0.0.1:1")
    text = path.read_text().replace("  fake:\n", "  fake-0.5b:\n").replace("- fake\n", "- fake-0.5b\n")
    path.write_text(text)
    with pytest.raises(ParamsError, match="no dots"):
        load_params(path)


def test_mappings_name_their_wrong_keys(tmp_path):
    """Typos inside free-form mappings are errors too, not silently ignored entries."""
    msg = _error(tmp_path, **{"evaluation.limits": {"gsm8": 3}})
    assert "evaluation.limits" in msg and "'gsm8'" in msg and "gsm8k" in msg
    msg = _error(tmp_path, **{"evaluation.decoding.temperature": {"math": 0.2, "code": 0.0, "genral": 0.0}})
    assert "evaluation.decoding.temperature" in msg and "general" in msg
    msg = _error(tmp_path, benchmark_generators=[])
    assert "benchmark_generators" in msg
    msg = _error(tmp_path, **{"evaluation.generators": ["nope"]})
    assert msg.count("evaluation.generators") >= 1 and "'nope'" in msg
    # canary: correct keys load
    ok = write_params(tmp_path / "ok.yaml", "http://127.0.0.1:1", **{"evaluation.limits": {"gsm8k": 3}})
    assert load_params(ok).evaluation.limits == {"gsm8k": 3}


def test_check_asks_for_the_judges_key_too(tmp_path, monkeypatch):
    """`agora check` covers every generator the pipeline calls, the judges included."""
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.setenv("FAKE_API_KEY", "k")
    monkeypatch.delenv("JUDGE_KEY", raising=False)
    path = write_params(tmp_path / "params.yaml", "http://127.0.0.1:1", **{
        "generators.judge": {"backend": "openai", "model": "j", "api_key_env": "JUDGE_KEY"},
        "evaluation.judge": "judge"})
    result = CliRunner().invoke(app, ["check", "--params", str(path)])
    assert result.exit_code == 2 and "JUDGE_KEY" in result.output
    monkeypatch.setenv("JUDGE_KEY", "k")  # canary: with the key set, the same file passes
    result = CliRunner().invoke(app, ["check", "--params", str(path)])
    assert result.exit_code == 0 and "ok" in result.output, result.output


def test_max_new_tokens_per_domain(tmp_path):
    from agorabench.evaluation.run import decoding_for

    limits = {"math": 384, "code": 192, "general": 192}
    params = load_params(write_params(tmp_path / "params.yaml", "http://127.0.0.1:1",
                                      **{"evaluation.decoding.max_new_tokens": limits}))
    assert decoding_for(params, "gsm8k").max_new_tokens == 384 and decoding_for(params, "mbpp").max_new_tokens == 192
    one = load_params(write_params(tmp_path / "params.yaml", "http://127.0.0.1:1",
                                   **{"evaluation.decoding.max_new_tokens": 300}))
    assert decoding_for(one, "gsm8k").max_new_tokens == decoding_for(one, "arenahard").max_new_tokens == 300
    msg = _error(tmp_path, **{"evaluation.decoding.max_new_tokens": {"math": 384, "code": 192}})
    assert "evaluation.decoding.max_new_tokens" in msg and "general" in msg
    assert "evaluation.decoding.max_new_tokens" in _error(tmp_path, **{"evaluation.decoding.max_new_tokens": 0})
