"""The pretraining loop on the nano preset: loss falls, every artifact is written, the config layers compose."""
import json

import pytest
import torch

from r1lab.tasks.corpus import synthetic_corpus, synthetic_factory
from base_model.pretrain import PretrainConfig, RUN_PRESETS, load_config, lr_at, pretrain
from base_model.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    train_tokenizer(synthetic_corpus(seed=0, limit=500), vocab_size=512, save_dir=d)
    return d


def test_nano_run_learns_and_writes_everything(tmp_path, tok_dir):
    torch.set_num_threads(1)
    cfg = PretrainConfig.for_preset("nano", out=str(tmp_path / "run"), tokenizer=str(tok_dir), max_steps=30,
                                    lr=5e-3, ckpt_every=10, progress=False, sample_max_new_tokens=8,
                                    sample_prompts=["What is 2 + 3?"])
    seen = []
    model_dir = pretrain(cfg, callback=lambda m, s: seen.append((s, m["loss"])), docs=synthetic_factory(seed=0))
    rows = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["step"] for r in rows] == list(range(1, 31)) and [s for s, _ in seen] == list(range(1, 31))
    first, last = sum(r["main_loss"] for r in rows[:3]) / 3, sum(r["main_loss"] for r in rows[-3:]) / 3
    assert last < first - 1.0                                          # the model learns the corpus
    assert all(r["mtp_loss"] is not None and r["aux_loss"] > 0 for r in rows)   # MTP and balance terms present
    assert rows[0]["tokens"] == 8 * 64 and rows[-1]["tokens_per_s"] > 0
    assert abs(rows[0]["lr"] - lr_at(0, cfg)) < 1e-12
    for f in ("model/model.safetensors", "model/config.json", "model/tokenizer.json", "plots/loss.png",
              "plots/expert_load.png", "samples.md", "config.yaml", "checkpoints/step_0000030/state.pt"):
        assert (tmp_path / "run" / f).exists(), f
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_0000020", "step_0000030"]
    # the final model loads in plain transformers (no base_model) and its loss matches ours
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from base_model import DeepSeekForCausalLM
    hf = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    ours = DeepSeekForCausalLM.from_pretrained(str(model_dir)).eval()
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    ids = torch.tensor([tok("What is 12 + 7? The answer is 19.").input_ids])
    assert torch.allclose(hf(ids).logits, ours(ids).logits, atol=1e-4)
    # the expert bias moved (aux-loss-free balancing ran every step)
    assert any(b.abs().sum() > 0 for n, b in ours.named_buffers() if n.endswith("e_score_correction_bias"))


def test_fp8_flag_trains(tmp_path, tok_dir):
    torch.set_num_threads(1)
    cfg = PretrainConfig.for_preset("nano", out=str(tmp_path / "fp8"), tokenizer=str(tok_dir), max_steps=12,
                                    lr=5e-3, fp8=True, progress=False, sample_prompts=[])
    pretrain(cfg, docs=synthetic_factory(seed=0))
    rows = [json.loads(l) for l in open(tmp_path / "fp8" / "metrics.jsonl")]
    assert rows[-1]["main_loss"] < rows[0]["main_loss"] - 0.5


def test_schedules():
    c = PretrainConfig(max_steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, c) == pytest.approx(0.1) and lr_at(9, c) == pytest.approx(1.0)
    assert lr_at(10, c) == pytest.approx(1.0) and lr_at(100, c) == pytest.approx(0.1)
    assert lr_at(55, c) == pytest.approx(0.55)                          # cosine midpoint
    w = c.model_copy(update={"schedule": "wsd", "wsd_decay_frac": 0.2})
    assert lr_at(50, w) == 1.0 and lr_at(79, w) == 1.0 and lr_at(90, w) == pytest.approx(0.55)


def test_config_layers_and_errors(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("preset: nano\nlr: 0.01\nmax_steps: 7\nmodel_overrides: {num_hidden_layers: 3}\n")
    c = load_config(["--config", str(y), "--max-steps", "9", "--fp8", "--out", "x"])
    assert (c.preset, c.lr, c.max_steps, c.fp8, c.out) == ("nano", 0.01, 9, True, "x")
    assert c.seq_len == RUN_PRESETS["nano"]["seq_len"] and c.model_overrides == {"num_hidden_layers": 3}
    y.write_text("lr: fast\n")
    with pytest.raises(SystemExit, match="YAML config.*key lr"):
        load_config(["--config", str(y)])
    y.write_text("learning_rate: 0.1\n")
    with pytest.raises(SystemExit, match="key learning_rate"):
        load_config(["--config", str(y)])
