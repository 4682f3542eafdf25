"""Every YAML in pipelines/ validates (a pipeline that names a checkpoint path is pointed at a real one)."""
from pathlib import Path

import pytest
import yaml

from base_model import DeepSeekForCausalLM, get_preset
from base_model.tokenizer import train_tokenizer
from r1lab.config import known_presets, load_pipeline

PIPELINES = sorted((Path(__file__).resolve().parents[1] / "pipelines").glob("*.yaml"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    tok = train_tokenizer(["1 + 2 = 3", "hello world", "def f(x): return x"] * 20, vocab_size=300)
    DeepSeekForCausalLM(get_preset("nano", vocab_size=len(tok))).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.mark.parametrize("path", PIPELINES, ids=[p.name for p in PIPELINES])
def test_shipped_pipeline_validates(path, checkpoint):
    model = yaml.safe_load(path.read_text())["model"]
    overrides = [] if model in known_presets() else [f"model={checkpoint}"]
    cfg = load_pipeline(path, overrides)
    assert cfg.name == path.stem and len(cfg.stages) >= 1
