"""Datasets in and out: `agora export` writes a Hugging Face dataset repository folder that `datasets`
reads back and a loopback Hub receives over real HTTP; `agora import` turns outside datasets
(distilabel, DataDreamer, Alpaca, chat files) into imports that the pipeline scores like a generator's."""
from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from agorabench.config import ParamsError
from agorabench.generation.importing import SourceError, resolve_import, with_import, write_import
from agorabench.generation.records import DatasetManifest, read_instances, read_rejections, write_dataset
from agorabench.results.collect import collect
from agorabench.results.db import build_results
from agorabench.results.export import config_name, export_datasets, features, push_to_hub
from agorabench.setting import Setting, import_setting, settings
from agorabench.testing.hub_server import FakeHubServer
from agorabench.testing.results_tree import tree_params, write_tree

ALPHA_CODE = Setting("alpha", "instance_generation", "code")
CONFIG = config_name(ALPHA_CODE)


def load(folder: Path, name: str, cache: Path):
    from datasets import load_dataset

    return load_dataset(str(folder), name=name, split="train", cache_dir=str(cache))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def with_imports(params, **imports):
    from agorabench.config import ImportConfig

    return params.model_copy(update={"imports": {**params.imports, **{n: ImportConfig(**c) for n, c in imports.items()}}})


def import_source(params, source: str, name: str, **kw):
    """What `agora import` does, without the params file: (the config it registers, the manifest written)."""
    cfg = resolve_import(params, source, name, **kw)
    return cfg, write_import(with_import(params, name, cfg), name)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A results tree (2 generators x 9 settings), its results database, and the export of both."""
    root = tmp_path_factory.mktemp("tree")
    tree = write_tree(root)
    db = build_results(tree.params)
    out = export_datasets(tree.params, root / "hub", results_db=db, repo_id="org/agora")
    return tree.params, db, out


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------


def test_export_reads_back_with_datasets_one_config_per_setting(exported, tmp_path):
    params, _, out = exported
    ds = load(out, CONFIG, tmp_path / "cache")
    source = read_instances(ALPHA_CODE.dataset(params)["data"], ALPHA_CODE.label)
    assert ds["instruction"] == [r.instruction for r in source] and ds["response"] == [r.response for r in source]
    assert ds["request_key"] == [r.request_key for r in source] and ds["model"] == [r.config for r in source]
    assert list(ds.features)[:3] == ["instruction", "response", "messages"]
    assert ds[0]["messages"] == [{"role": "system", "content": params.student.system_prompt},
                                 {"role": "user", "content": source[0].instruction},
                                 {"role": "assistant", "content": source[0].response}]
    assert sorted(p.name for p in (out / "data").iterdir()) == sorted(config_name(s) for s in settings(params))
    # Canary: a config the card does not list is refused, so the read above went through the card.
    with pytest.raises(ValueError):
        load(out, "nobody--instance_generation--code", tmp_path / "cache")


def test_card_has_the_hubs_front_matter_and_each_configs_provenance(exported):
    import duckdb
    from huggingface_hub import DatasetCard

    _, db, out = exported
    card = DatasetCard.load(out / "README.md")
    assert card.data.license == "other" and card.data.task_categories == ["text-generation"]
    assert "synthetic" in card.data.tags and card.data.size_categories == ["n<1K"]
    configs = {c["config_name"]: c["data_files"] for c in card.data.configs}
    assert configs[CONFIG] == [{"split": "train", "path": f"data/{CONFIG}/train-*"}]
    assert len(configs) == 18 and len(card.data.dataset_info) == 18
    con = duckdb.connect(str(db), read_only=True)
    pgr = con.execute("SELECT pgr FROM pgr_domain WHERE generator = 'alpha' AND method = 'instance_generation' "
                      "AND domain = 'code'").fetchone()[0]
    con.close()
    section = card.text.split(f"### {CONFIG}\n")[1].split("### ")[0]
    assert f"- PGR (domain): {pgr:.1f} over 2 benchmark(s)" in section
    assert "(backend `openai`, model `alpha-model`)" in section and "prompt set sha256 `x`" in section
    assert "Rejected by validation: 1 (no_answer: 1)" in section and "- Cost: $0.004 (420 input" in section
    assert "- Generation time: 2.0 s of answers" in section
    assert "Sampling: t 1" in section and "quality 4.000" in section
    manifest = DatasetManifest.model_validate_json((out / "manifests" / f"{CONFIG}.json").read_bytes())
    assert manifest.prompt_file == "instance_generation_code.txt"


def test_export_without_results_is_byte_stable_and_replaces_only_its_own_files(exported, tmp_path):
    params, _, out = exported
    picked = [ALPHA_CODE.label, "beta/response_generation/math"]
    a = export_datasets(params, tmp_path / "a", settings=picked)
    b = export_datasets(params, tmp_path / "b", settings=picked)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and len(files) == 5
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert "PGR (domain)" not in (a / "README.md").read_text()  # canary of the PGR lines checked above
    # Exporting again replaces what an export owns (a config dropped since disappears) and nothing else.
    (a / ".gitattributes").write_text("*.parquet filter=lfs\n")
    export_datasets(params, a, settings=picked[:1])
    assert (a / ".gitattributes").is_file() and [p.name for p in (a / "data").iterdir()] == [CONFIG]
    # A subset picks configs; it does not change them.
    assert ((a / "data" / CONFIG / "train-00000-of-00001.parquet").read_bytes()
            == (out / "data" / CONFIG / "train-00000-of-00001.parquet").read_bytes())


def test_a_dataset_without_rows_is_named_in_the_card_but_gets_no_config(tmp_path):
    from huggingface_hub import DatasetCard

    params = tree_params(tmp_path, generators=["tiny"])
    params = params.model_copy(update={"domains": ["math", "code"], "methods": ["instance_generation"]})
    empty, full = (Setting("tiny", "instance_generation", d) for d in ("math", "code"))
    manifest = DatasetManifest(
        generator="tiny", backend="local", model="tiny-model", domain="math", method="instance_generation",
        num_requested=2, num_valid=0, complete=False, shortfall_reason="retry budget spent", attempts=8,
        rejections={"math_result_tags": 8}, cost_usd=0.0, input_tokens=800, output_tokens=400, prompt_format="text",
        prompt_file="p.txt", prompt_set_sha256="x", sampling={}, seed=42, seed_source="offline", num_seeds=1,
        seeds_sha256="y", versions={})
    write_dataset(empty.dataset(params), [], [], manifest)
    full.dataset(params)["data"].write_text(json.dumps({
        "id": "tiny/instance_generation/code/000000", "instruction": "Write f.", "response": "```f```", "config": None,
        "generator": "tiny", "method": "instance_generation", "domain": "code", "attempt": 0, "seed_ids": [],
        "theme": None, "first_word": None, "prompt_sha256": None, "request_key": None, "input_tokens": None,
        "output_tokens": None, "cost_usd": None}) + "\n")  # a dataset copied by hand: no manifest
    out = export_datasets(params, tmp_path / "hub")
    # `datasets` cannot load a split without rows: the empty dataset is in the card, not a config.
    assert [c["config_name"] for c in DatasetCard.load(out / "README.md").data.configs] == [config_name(full)]
    ds = load(out, config_name(full), tmp_path / "cache")
    assert ds.num_rows == 1 and list(ds.features) == list(features()) and ds["cost_usd"] == [None]
    text = (out / "README.md").read_text()
    assert "No valid instance, so no config to load (instance_generation / math)." in text
    assert "No manifest was found beside this dataset" in text
    assert "0 valid of 2 requested (short: retry budget spent)" in text and "Cost: $0 (800 input" in text


def test_export_errors_are_one_line(exported, tmp_path):
    params, _, _ = exported
    with pytest.raises(ValueError, match=r"--setting nobody/instance_generation/code: no such dataset") as e:
        export_datasets(params, tmp_path / "x", settings=["nobody/instance_generation/code"])
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="no dataset of the settings in params; run `agora run`") as e:
        export_datasets(tree_params(tmp_path / "empty"), tmp_path / "x")
    assert "\n" not in str(e.value) and not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------------
# Push (a loopback Hub over real HTTP)
# ---------------------------------------------------------------------------------------------


def test_push_uploads_every_file_and_the_pushed_repo_loads(exported, tmp_path, monkeypatch):
    from datasets import load_dataset

    from tests.conftest import download_from

    _, _, out = exported
    with FakeHubServer() as hub:
        download_from(hub, monkeypatch, tmp_path / "hf")  # online, and downloads come from this Hub
        url = push_to_hub(out, "org/agora", token="hf_test", endpoint=hub.url)
        pushed = list(hub.requests)
        # What a user of the pushed repository runs, over HTTP from the same Hub: the card's configs.
        assert load_dataset("org/agora", CONFIG, split="train").num_rows == 3
        with pytest.raises(ValueError, match=CONFIG):  # canary: a config the card does not declare is refused
            load_dataset("org/agora", "no-such-config", split="train")
    assert [r["path"] for r in pushed] == [
        "/api/repos/create", "/api/validate-yaml", "/api/datasets/org/agora/preupload/main",
        "/api/datasets/org/agora/commit/main"]
    assert {r["authorization"] for r in pushed} == {"Bearer hf_test"}
    repo = hub.repos["datasets/org/agora"]
    local = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert repo["files"] == local and len(local) == 1 + 18 + 18  # the card, the data, the manifests
    assert url.endswith("/datasets/org/agora/commit/" + repo["commits"][0]["oid"])


def test_push_refuses_offline_and_a_card_the_hub_rejects(exported, tmp_path, monkeypatch):
    _, _, out = exported
    with FakeHubServer() as hub:
        with pytest.raises(ValueError, match="the Hub is offline") as e:
            push_to_hub(out, "org/agora", token="t", endpoint=hub.url)  # conftest: HF_HUB_OFFLINE=1
        assert "\n" not in str(e.value) and hub.requests == []
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        broken = tmp_path / "broken"
        (broken / "data").mkdir(parents=True)
        (broken / "README.md").write_text("---\nconfigs:\n- data_files: data/*\n---\n")  # no config_name
        with pytest.raises(ValueError, match="the Hub refused the card: .*config_name") as e:
            push_to_hub(broken, "org/broken", token="t", endpoint=hub.url)
        assert "\n" not in str(e.value) and hub.repos["datasets/org/broken"]["files"] == {}
        with pytest.raises(ValueError, match="give ORG/NAME"):
            push_to_hub(out, "agora", token="t", endpoint=hub.url)


# ---------------------------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------------------------


def distilabel_rows(n: int) -> list[dict]:
    """What distilabel's TextGeneration writes: instruction, generation, model_name, distilabel_metadata."""
    return [{"instruction": f"What is {k} + {k}?", "generation": f"{k} + {k} = {2 * k}.\n[RESULT] {2 * k} [/RESULT]",
             "model_name": "Llama-3.1-8B-Instruct",
             "distilabel_metadata": {"raw_output_text_generation_0": "...",
                                     "statistics_text_generation_0": {"input_tokens": 9, "output_tokens": 12}}}
            for k in range(n)]


def datadreamer_rows() -> list[dict]:
    """What DataDreamer's ProcessWithPrompt step exports (inputs, prompts, generations; export_to_json
    writes JSON Lines whatever the suffix)."""
    good = "```python\ndef add(a, b):\n    return a + b\n```"
    return [{"inputs": "Write add(a, b).", "prompts": "Input: Write add(a, b).", "generations": good},
            {"inputs": "Write sub(a, b).", "prompts": "...", "generations": good + "\nExample usage:\n```python\nadd(1, 2)\n```"},
            {"inputs": "Write mul(a, b).", "prompts": "...", "generations": "def mul(a, b): return a * b"}]


def test_import_a_distilabel_file_as_a_generator_with_unknown_cost(tmp_path):
    params = tree_params(tmp_path, generators=["gen"])
    src = write_jsonl(tmp_path / "distilabel.jsonl", distilabel_rows(4))
    cfg, m = import_source(params, str(src), "distil", method="response_generation", domain="math")
    assert (cfg.instruction_column, cfg.response_column, cfg.model) == ("instruction", "generation", "Llama-3.1-8B-Instruct")
    assert m.backend == "import" and m.cost_usd is None and m.input_tokens is None and m.num_valid == 4 and m.complete
    assert m.source["format"] == "jsonl" and len(m.source["sha256"]) == 64 and m.source["path"] == str(src)
    # The import is one more setting of params: collect reads it like a generator's, cost NULL (not 0).
    params = with_imports(params, distil=cfg.model_dump())
    assert import_setting(params, "distil") in settings(params)
    tables = {n: pq.read_table(p).to_pylist() for n, p in collect(params).items()}
    (ds,) = [d for d in tables["datasets"] if d["generator"] == "distil"]
    assert (ds["backend"], ds["model"], ds["num_valid"], ds["cost_usd"]) == ("import", "Llama-3.1-8B-Instruct", 4, None)
    got = [r for r in tables["instances"] if r["generator"] == "distil"]
    assert [r["instruction"] for r in got] == [r["instruction"] for r in distilabel_rows(4)]
    assert got[2]["id"] == "distil/response_generation/math/000002" and got[2]["attempt"] == 2
    # Exported, it says where it came from and that its cost is unknown.
    from huggingface_hub import DatasetCard

    out = export_datasets(params, tmp_path / "hub")
    section = DatasetCard.load(out / "README.md").text.split("### distil--response_generation--math\n")[1]
    assert f"- Imported from `{src}` (jsonl, sha256 `{m.source['sha256']}`)" in section
    assert "columns: instruction `instruction`, response `generation`" in section and "- Cost: unknown" in section
    assert "Generation time" not in section  # an import's time is unknown: no line rather than a made-up one
    assert load(out, "distil--response_generation--math", tmp_path / "cache")["cost_usd"] == [None] * 4


def test_import_a_datadreamer_file_rejects_what_generation_would(tmp_path):
    params = tree_params(tmp_path, generators=["gen"])
    src = write_jsonl(tmp_path / "datadreamer.json", datadreamer_rows())
    cfg, m = import_source(params, str(src), "dd", method="instance_generation", domain="code")
    assert (cfg.instruction_column, cfg.response_column) == ("inputs", "generations") and cfg.model is None
    assert m.num_valid == 1 and not m.complete and m.rejections == {"code_banned_phrase": 1, "code_fences": 1}
    assert m.shortfall_reason == "2 of 3 source rows failed validation"
    paths = import_setting(with_imports(params, dd=cfg.model_dump()), "dd").dataset(params)
    rejected = read_rejections(paths["rejected"], "dd")
    assert [(r.attempt, r.reason) for r in rejected] == [(1, "code_banned_phrase"), (2, "code_fences")]
    assert json.loads(rejected[0].raw)["inputs"] == "Write sub(a, b)."
    # Canary: without the domain's format rules both rejected rows are kept.
    cfg, m = import_source(params, str(src), "dd", method="instance_generation", domain="code", strict_format=False)
    assert m.num_valid == 3 and not cfg.strict_format


def test_import_chat_messages_from_parquet_and_a_save_to_disk_folder(tmp_path):
    from datasets import Dataset

    params = tree_params(tmp_path, generators=["gen"])

    def chat(k):
        return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"What is {k} + {k}?"},
                {"role": "assistant", "content": f"{k} + {k} = {2 * k}.\n[RESULT] {2 * k} [/RESULT]"},
                {"role": "user", "content": "And times two?"}, {"role": "assistant", "content": "later"}]

    pq.write_table(pa.Table.from_pylist([{"messages": chat(k), "source": "synthetic"} for k in range(3)]),
                   tmp_path / "chat.parquet")
    cfg, m = import_source(params, str(tmp_path / "chat.parquet"), "chat", method="instance_generation",
                           domain="math", limit=2)
    assert cfg.messages_column == "messages" and m.source["format"] == "parquet"
    assert (m.num_requested, m.num_valid, m.attempts, m.complete) == (2, 2, 2, True)
    rows = read_instances(Setting("chat", "instance_generation", "math").dataset(params)["data"], "chat")
    assert rows[1].instruction == "What is 1 + 1?" and rows[1].response.endswith("[RESULT] 2 [/RESULT]")
    # ShareGPT turns (from/value) in a `datasets` save_to_disk folder read the same way.
    turns = [[{"from": "human", "value": "What is 5 + 5?"}, {"from": "gpt", "value": "[RESULT] 10 [/RESULT]"}]]
    Dataset.from_dict({"conversations": turns}).save_to_disk(str(tmp_path / "saved"))
    cfg, m = import_source(params, str(tmp_path / "saved"), "saved", method="instance_generation", domain="math")
    assert cfg.messages_column == "conversations" and m.source["format"] == "save_to_disk" and m.num_valid == 1


def test_an_exported_dataset_imports_back_unchanged(exported, tmp_path):
    params, _, out = exported
    cfg, _ = import_source(tree_params(tmp_path, generators=["gen"]), str(out / "data" / CONFIG / "train-00000-of-00001.parquet"),
                           "again", method="instance_generation", domain="code", strict_format=False)
    assert (cfg.instruction_column, cfg.response_column, cfg.messages_column) == ("instruction", "response", None)
    back = read_instances(Setting("again", "instance_generation", "code").dataset(tree_params(tmp_path))["data"], "again")
    source = read_instances(ALPHA_CODE.dataset(params)["data"], ALPHA_CODE.label)
    assert [(r.instruction, r.response) for r in back] == [(r.instruction, r.response) for r in source]


def test_alpaca_input_is_joined_to_the_instruction(tmp_path):
    params = tree_params(tmp_path, generators=["gen"])
    rows = [{"instruction": "Summarize the text.", "input": "Cats sleep a lot.", "output": "Cats sleep."},
            {"instruction": "Name a color.", "input": "", "output": "Blue."}]
    src = str(write_jsonl(tmp_path / "alpaca.jsonl", rows))
    cfg, _ = import_source(params, src, "alpaca", method="response_generation", domain="general")
    assert (cfg.instruction_column, cfg.input_column, cfg.response_column) == ("instruction", "input", "output")
    path = Setting("alpaca", "response_generation", "general").dataset(params)["data"]
    assert [r.instruction for r in read_instances(path, "alpaca")] == ["Summarize the text.\n\nCats sleep a lot.",
                                                                        "Name a color."]
    # Canary: naming the two columns takes them as they are.
    import_source(params, src, "alpaca", method="response_generation", domain="general",
                  columns={"instruction_column": "instruction", "response_column": "output"})
    assert read_instances(path, "alpaca")[0].instruction == "Summarize the text."


def test_bad_input_is_one_line_naming_the_flag_or_file_and_writes_nothing(tmp_path):
    params = tree_params(tmp_path, generators=["gen"])
    src = write_jsonl(tmp_path / "d.jsonl", distilabel_rows(2))

    def error(match, source=src, exc=SourceError, **kw):
        kw = {"method": "response_generation", "domain": "math", **kw}
        with pytest.raises(exc, match=match) as e:
            import_source(params, str(source), kw.pop("name", "x"), **kw)
        assert "\n" not in str(e.value)
        return str(e.value)

    msg = error(r"no column 'prompt' \(columns: instruction, generation, model_name, distilabel_metadata\); "
                r"pass --instruction-column with one of them",
                columns={"instruction_column": "prompt", "response_column": "generation"})
    assert msg.startswith(str(src))
    error(r"pass --response-column too", columns={"instruction_column": "instruction"})
    error("cannot tell which columns.*pass --instruction-column and --response-column, or --messages-column",
          write_jsonl(tmp_path / "odd.jsonl", [{"a": "q", "b": "r"}]))
    error(r"empty.jsonl: no rows; give a file with data", write_jsonl(tmp_path / "empty.jsonl", []))
    (tmp_path / "d.csv").write_text("instruction,response\nq,a\n")
    error(r"unknown format '.csv'; give a .jsonl, .json or .parquet file", tmp_path / "d.csv")
    error("the Hub is offline.*AGORA_ONLINE=1", "someorg/somedata")  # conftest: offline
    error("no such file or folder", tmp_path / "missing.jsonl")
    (tmp_path / "folder").mkdir()
    error("not one datasets' save_to_disk wrote", tmp_path / "folder")
    (tmp_path / "broken.jsonl").write_text('{"instruction": "q", "generation": "a"}\n{oops\n')
    error("broken.jsonl: line 2 is not valid JSON", tmp_path / "broken.jsonl")
    error(r"domain 'poetry' is not allowed; choose one of math, code, general", exc=ParamsError, domain="poetry")
    error(r"--as gen: 'gen' is a generator in params", exc=ParamsError, name="gen")
    error(r"none of its 2 rows is a valid response_generation/code instance \(code_fences: 2\); check "
          r"--method/--domain, or pass --no-strict-format", domain="code")
    assert not Path(params.generation.output_dir).exists()  # nothing was written by any of these
    # Canary: the same file with the right setting imports.
    assert import_source(params, str(src), "x", method="response_generation", domain="math")[1].num_valid == 2


def test_the_generate_stage_of_an_import_rereads_its_source_and_follows_it(tmp_path):
    params = tree_params(tmp_path, generators=["gen"])
    src = write_jsonl(tmp_path / "d.jsonl", distilabel_rows(3))
    cfg, _ = import_source(params, str(src), "distil", method="response_generation", domain="math")
    params = with_imports(params, distil=cfg.model_dump())
    paths = import_setting(params, "distil").dataset(params)
    first = {k: p.read_bytes() for k, p in paths.items()}
    write_import(params, "distil")
    assert {k: p.read_bytes() for k, p in paths.items()} == first  # the same source, the same bytes
    write_jsonl(src, distilabel_rows(5))
    assert write_import(params, "distil").num_valid == 5  # canary: a changed source is read again
    write_jsonl(src, [{"question": "q", "answer": "a [RESULT] 1 [/RESULT]"}])
    with pytest.raises(SourceError, match=r"no column 'instruction' .*; set imports.distil.instruction_column"):
        write_import(params, "distil")


def test_imports_have_their_own_chain_of_stages_and_call_no_generator(tmp_path):
    from agorabench.pipeline.stages import calls_a_model, generators_called_by, lane_groups, pipeline_stages, servers_for

    params = tree_params(tmp_path, generators=["gen"])
    params = params.model_copy(update={"generators": {"gen": params.generators["gen"].model_copy(
        update={"backend": "local", "model": "tiny"}), "judge": params.generators["gen"].model_copy(
        update={"backend": "local", "model": "judge-model"})},
        "evaluation": params.evaluation.model_copy(update={"judge": "judge", "generators": [], "engine": "transformers"})})
    params = with_imports(params, mine={"source": "d.jsonl", "method": "quality_enhancement", "domain": "code",
                                        "instruction_column": "q", "response_column": "a"})
    known = pipeline_stages(params)
    chain = ["import@mine", "import-train@mine", "import-evaluate@mine", "import-intrinsic@mine"]
    assert [known[n].kind for n in chain] == ["import", "import-train", "import-evaluate", "import-intrinsic"]
    assert tuple(chain) in next(g.chains for g in lane_groups(params, list(known)) if "import@mine" in g.stages)
    assert generators_called_by(params, chain[:2]) == [] and not calls_a_model(params, chain[:2])
    assert generators_called_by(params, chain[2:3]) == ["judge"]  # evaluation asks the judge
    assert [s.model for s in servers_for(params, chain[:2])] == []
    # Canary: a generator's own generate stage calls its model.
    assert generators_called_by(params, ["generate@gen-quality_enhancement-code"]) == ["gen"]
    assert calls_a_model(params, ["generate@gen-quality_enhancement-code"])


def test_the_dry_run_counts_an_imports_stages_and_no_generation(tmp_path):
    from agorabench.pipeline.dry_run import plan

    params = tree_params(tmp_path, generators=["gen"])
    before = plan(params)
    after = plan(with_imports(params, mine={"source": "d.jsonl", "method": "response_generation", "domain": "general",
                                            "instruction_column": "q", "response_column": "a"}))
    assert {k: v for k, v in after["stages"].items() if k.startswith("import")} == {
        "import": 1, "import-train": 1, "import-evaluate": 1, "import-intrinsic": 1}
    assert not any(k.startswith("import") for k in before["stages"])  # canary: none without imports
    assert after["training"]["students"] == before["training"]["students"] + 1
    # its student on general's benchmarks: alpacaeval, arenahard and the extra ifeval
    assert after["evaluation"]["benchmark_runs"] == before["evaluation"]["benchmark_runs"] + 3
    assert after["generation"] == before["generation"]  # no request, no token, no cost


def test_agora_check_names_an_imports_missing_source(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from flows.cli import app
    from tests.conftest import write_params

    monkeypatch.setenv("FAKE_API_KEY", "k")
    src = tmp_path / "mine.jsonl"
    path = write_params(tmp_path / "params.yaml", "http://127.0.0.1:1", imports={"mine": {
        "source": str(src), "method": "response_generation", "domain": "math", "messages_column": "messages"}})
    result = CliRunner().invoke(app, ["check", "--params", str(path)])
    assert result.exit_code == 2 and f"imports.mine.source: {src} does not exist" in result.output
    write_jsonl(src, [])  # canary: with the file there, the same params pass
    result = CliRunner().invoke(app, ["check", "--params", str(path)])
    assert result.exit_code == 0 and "1 imports" in result.output, result.output


def test_an_import_name_must_be_its_own(tmp_path):
    from agorabench.config import Params

    raw = yaml.safe_load(tree_params(tmp_path).model_dump_json())
    raw["imports"] = {"alpha": {"source": "d.jsonl", "method": "response_generation", "domain": "math",
                                "instruction_column": "q", "response_column": "a"}}
    with pytest.raises(ValueError, match="imports.alpha: 'alpha' is also a generator"):
        Params.model_validate(raw)
    raw["imports"] = {"mine": {"source": "d.jsonl", "method": "response_generation", "domain": "math"}}
    with pytest.raises(ValueError, match="give instruction_column and response_column, or messages_column"):
        Params.model_validate(raw)
    raw["imports"]["mine"]["messages_column"] = "m"
    assert Params.model_validate(raw).imports["mine"].messages_column == "m"  # canary


# ---------------------------------------------------------------------------------------------
# The commands: `agora import` registers, `agora generate` of an import calls no model
# ---------------------------------------------------------------------------------------------


def test_agora_import_registers_the_dataset_and_its_generate_stage_calls_no_model(
        prefect_harness, tmp_path, fake_server, monkeypatch):
    from typer.testing import CliRunner

    from flows.cli import app
    from tests.conftest import write_params

    monkeypatch.setenv("FAKE_API_KEY", "k")
    params_file = write_params(tmp_path / "params.yaml", fake_server.url)
    text = "# my experiment: comments stay\n" + params_file.read_text().replace("\nimports: {}", "\nimports: {}  # mine")
    params_file.write_text(text)
    src = write_jsonl(tmp_path / "distilabel.jsonl", distilabel_rows(3))
    run = lambda *args: CliRunner().invoke(app, [*args, "--params", str(params_file)])

    result = run("import", str(src), "--as", "distil", "--domain", "math", "--method", "response_generation")
    assert result.exit_code == 0, result.output
    assert "distil response_generation math: 3 instances from 3 rows" in result.output
    after = params_file.read_text()
    assert after.startswith(text.split("\nimports:")[0])  # every line before it, comments included, kept
    assert yaml.safe_load(after)["imports"] == {"distil": {
        "source": str(src), "method": "response_generation", "domain": "math", "instruction_column": "instruction",
        "response_column": "generation", "model": "Llama-3.1-8B-Instruct"}}
    data = tmp_path / "data/generated/distil/response_generation/math.jsonl"
    before = data.read_bytes()

    result = run("generate", "-g", "distil", "-m", "response_generation", "-d", "math")
    assert result.exit_code == 0, result.output
    assert "dataset cost unknown (imported)" in result.output and "0 requests sent" in result.output
    assert fake_server.request_count == 0 and data.read_bytes() == before
    # Bad input: one line naming the flag and the fix; params untouched.
    result = run("import", str(src), "--as", "bad", "--domain", "math", "--method", "response_generation",
                 "--response-column", "answer")
    assert result.exit_code == 2 and "no column 'answer'" in result.output and "pass --response-column" in result.output
    assert len(result.output.strip().splitlines()) == 1 and params_file.read_text() == after
    result = run("generate", "-g", "distil", "-m", "instance_generation", "-d", "math")
    assert result.exit_code == 2 and "imports.distil is the response_generation/math dataset" in result.output
    # Canary: a generator's generate stage does call its model.
    result = run("generate", "-g", "fake", "-m", "response_generation", "-d", "math", "-n", "1")
    assert result.exit_code == 0, result.output
    assert fake_server.request_count > 0


# ---------------------------------------------------------------------------------------------
# End to end: what is an outside dataset worth?
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_imported_distilabel_and_datadreamer_files_get_their_pgr(prefect_harness, tmp_path, fake_server, monkeypatch,
                                                                 tiny_student):
    """Two outside files (a distilabel chat file and a DataDreamer export), imported for the general domain,
    each train a student that is evaluated against the two anchors: the results database has their PGR,
    their intrinsic metrics and an unknown (NULL) cost. The same stages as a generator's, no generation call."""
    import duckdb
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.evaluate import evaluate
    from flows.intrinsic import intrinsic
    from flows.results import results
    from flows.train import train
    from tests.conftest import write_params

    monkeypatch.setenv("FAKE_API_KEY", "k")
    params_file = write_params(tmp_path / "params.yaml", fake_server.url, **{
        "student.base": tiny_student, "student.reference": "smollm2-135m-instruct",
        "training.max_length": 256, "training.num_epochs": 1, "training.lora": None,
        "training.output_dir": str(tmp_path / "ckpt"), "training.logs_dir": str(tmp_path / "train"),
        # IFEval as the general domain's benchmark: checked by a program, so no judge call decides the PGR
        "evaluation.benchmarks": {"math": ["gsm8k"], "code": ["mbpp"], "general": ["ifeval"]},
        "evaluation.extra": [], "evaluation.limit": 6, "evaluation.generators": [], "evaluation.base_fewshot": 0,
        "evaluation.decoding.max_new_tokens": 48, "evaluation.max_prompt_tokens": 256, "analysis.min_gap": 0.0,
        "evaluation.output_dir": str(tmp_path / "eval"), "evaluation.scores_dir": str(tmp_path / "scores"),
        "intrinsic.output_dir": str(tmp_path / "intrinsic"), "intrinsic.cache_db": str(tmp_path / "ic.sqlite"),
        "analysis.results_dir": str(tmp_path / "results")})
    distilabel = [{"messages": [{"role": "user", "content": f"Name {k + 2} colors, comma separated."},
                                {"role": "assistant", "content": ", ".join(["red", "green", "blue", "gold", "gray"][:k + 2])}],
                   "model_name": "Llama-3.1-8B-Instruct"} for k in range(3)]
    datadreamer = [{"inputs": f"Write one sentence about the number {k}.", "prompts": "...",
                    "generations": f"The number {k} comes after {k - 1}."} for k in range(4)]
    files = {"distil": write_jsonl(tmp_path / "distilabel.jsonl", distilabel),
             "dd": write_jsonl(tmp_path / "datadreamer.json", datadreamer)}
    cli = lambda *args: CliRunner().invoke(app, [*args, "--params", str(params_file)])
    for name, method in (("distil", "response_generation"), ("dd", "instance_generation")):
        result = cli("import", str(files[name]), "--as", name, "--domain", "general", "--method", method)
        assert result.exit_code == 0, result.output
        result = cli("generate", "-g", name, "-m", method, "-d", "general")  # the import's generate stage
        assert result.exit_code == 0, result.output
    assert fake_server.request_count == 0  # no model wrote or read anything so far

    for model in ("base", "reference"):
        evaluate(model=model, benchmarks=["ifeval"], params_file=str(params_file))  # the one the PGR needs
    for name, method in (("distil", "response_generation"), ("dd", "instance_generation")):
        assert train(generator=name, domain="general", method=method, params_file=str(params_file))["steps"] >= 1
        evaluate(model=f"student:{name}/{method}/general", params_file=str(params_file))
        intrinsic(generator=name, domains=["general"], methods=[method], params_file=str(params_file))
    db = results(params_file=str(params_file))

    con = duckdb.connect(db, read_only=True)
    q = lambda sql: con.execute(sql).fetchall()
    scores = dict(q("SELECT model, score FROM scores WHERE benchmark = 'ifeval'"))
    base, ref = scores["base"], scores["reference"]
    pgr = dict(q("SELECT generator, pgr FROM pgr_domain WHERE domain = 'general'"))
    assert set(pgr) == {"distil", "dd"}
    # SmolLM2-135M-Instruct follows some IFEval instructions, the untrained 2-layer base none: PGR is defined.
    assert ref > base
    for name, method in (("distil", "response_generation"), ("dd", "instance_generation")):
        student = scores[f"students/{name}/{method}/general"]
        assert pgr[name] == pytest.approx((student - base) / (ref - base) * 100), (name, student, base, ref)
    assert q("SELECT generator, backend, cost_usd FROM datasets ORDER BY generator") == [
        ("dd", "import", None), ("distil", "import", None)]
    assert q("SELECT count(*) FROM generator_summary WHERE generator IN ('dd', 'distil') AND cost_usd IS NULL") == [(2,)]
    intrinsic_rows = q("SELECT generator, perplexity, response_diversity FROM intrinsic_summary ORDER BY generator")
    assert [r[0] for r in intrinsic_rows] == ["dd", "distil"] and all(r[1] is not None for r in intrinsic_rows)
    con.close()


@pytest.mark.slow
def test_dvc_runs_the_import_stage_without_a_model_and_export_pushes_through_hf_endpoint(tmp_path, fake_server,
                                                                                       prefect_api_env):
    """In a real git + DVC repository: `dvc repro import` writes the imported dataset with no request, DVC
    tracks the source file (an edit re-runs the stage), and `agora export --push-to-hub` uploads the
    datasets to the Hub that HF_ENDPOINT names (a loopback one), from which `datasets` loads them."""
    import shutil
    import subprocess
    import sys

    from tests.conftest import REPO, write_params

    repo = tmp_path / "bench"
    repo.mkdir()
    for item in ("agorabench", "flows", "tasks", "requirements"):
        shutil.copytree(REPO / item, repo / item, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    (repo / "imports").mkdir()
    write_jsonl(repo / "imports/distil.jsonl", distilabel_rows(3))
    params_path = write_params(repo / "params.yaml", fake_server.url, methods=["response_generation"], domains=["math"])
    params = yaml.safe_load(params_path.read_text())
    params["generation"].update(prompt_dir="agorabench/generation/prompts/default", output_dir="data/generated")
    params["cache"]["requests_db"] = ".agora/requests.sqlite"
    params["imports"] = {"distil": {"source": "imports/distil.jsonl", "method": "response_generation",
                                    "domain": "math", "instruction_column": "instruction",
                                    "response_column": "generation"}}
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, **prefect_api_env, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
           "PYTHONPATH": str(REPO), "FAKE_API_KEY": "k", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def sh(*cmd, **extra):
        done = subprocess.run(cmd, cwd=repo, env={**env, **extra}, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{cmd}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
        return done.stdout

    sh("git", "init", "-q")
    sh("dvc", "init", "-q")
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "bench")
    sh("dvc", "repro", "import")
    data = repo / "data/generated/distil/response_generation/math.jsonl"
    assert len(data.read_text().splitlines()) == 3 and "import@distil" in (repo / "dvc.lock").read_text()
    assert fake_server.request_count == 0
    assert "didn't change" in sh("dvc", "repro", "import")
    write_jsonl(repo / "imports/distil.jsonl", distilabel_rows(4))  # canary: DVC tracks the source
    assert "import@distil" in sh("dvc", "status", "import")
    sh("dvc", "repro", "import")
    assert len(data.read_text().splitlines()) == 4 and fake_server.request_count == 0

    with FakeHubServer() as hub:
        out = sh("agora", "export", "--push-to-hub", "org/distil", "--out", "export",
                 HF_ENDPOINT=hub.url, AGORA_ONLINE="1", HF_HUB_OFFLINE="0", HF_TOKEN="hf_test")
    assert "1 configs; pushed: " in out
    files = hub.repos["datasets/org/distil"]["files"]
    assert set(files) == {"README.md", "data/distil--response_generation--math/train-00000-of-00001.parquet",
                          "manifests/distil--response_generation--math.json"}
    for rel, blob in files.items():
        (tmp_path / "pulled" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pulled" / rel).write_bytes(blob)
    ds = load(tmp_path / "pulled", "distil--response_generation--math", tmp_path / "cache")
    assert ds["instruction"] == [r["instruction"] for r in distilabel_rows(4)]
