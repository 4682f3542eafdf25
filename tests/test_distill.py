"""distill stage: teacher traces generated and filtered by the teacher (rejection sampling code) plus an earlier
stage's traces train a student built from a base_model preset with the teacher's tokenizer, through the sft code;
token-level KD: the loss the trainer optimises is α·T²·KL(teacher_T ‖ student_T) + (1−α)·CE, recomputed by hand
from both models' logits, α=0 is exactly the sft loss, and a KD run pulls the student towards the teacher."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from grpo_helpers import nano_deepseek  # noqa: F401
from pipeline_helpers import tiny_model, tiny_tok  # noqa: F401
from r1lab.config import load_pipeline
from r1lab.pipeline import run_pipeline
from r1lab.train import sft
from r1lab.loading import load_model
from r1lab.stages.distill import KD, Params, check_vocab, kd_loss

torch.set_num_threads(1)


def test_distill_student_from_teacher_traces(tmp_path, nano_deepseek):
    (tmp_path / "r.py").write_text("def short(completions, **kw):\n    return [float(len(c) < 40) for c in completions]\n")
    stages = [{"name": "distill", "kind": "distill", "student": "nano", "max_steps": 3, "per_device_train_batch_size": 4,
               "max_length": 64, "save_steps": 3, "learning_rate": 1e-2,
               "traces": [{"task": "arithmetic", "n": 6, "difficulty": 1}],
               "generate": {"data": [{"task": "countdown", "n": 3}], "n": 3, "max_new_tokens": 6,
                            "rewards": [f"{tmp_path}/r.py:short"], "max_per_prompt": 2,
                            "require_format": False, "drop_truncated": False}}]
    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml.safe_dump({"name": "p", "seed": 0, "output_dir": str(tmp_path / "out"),
                                   "model": str(nano_deepseek), "stages": stages}))
    res = run_pipeline(load_pipeline(cfg))[0]
    m = res["metrics"]
    d = tmp_path / "out" / "distill"
    gen = [json.loads(line) for line in (d / "data" / "samples.jsonl").read_text().splitlines()]
    assert 0 < len(gen) <= 6 and all(r["rewards"] == {"short": 1.0} and len(r["completion"]) < 40 for r in gen)
    assert m["rows"] == 6 + len(gen) and m["steps"] == 3 and m["traces_kept"] == len(gen)
    cfg_student = json.loads((d / "model" / "config.json").read_text())
    teacher_tok = json.loads((nano_deepseek / "tokenizer.json").read_text())
    assert cfg_student["vocab_size"] == json.loads((nano_deepseek / "config.json").read_text())["vocab_size"]
    assert json.loads((d / "model" / "tokenizer.json").read_text())["model"] == teacher_tok["model"]
    assert m["student_params"] == m["teacher_params"]     # nano student of a nano teacher here
    start = {k: v.clone() for k, v in _weights(d / "_student_init").items()}
    after = _weights(d / "model")
    assert any(not torch.equal(start[k], after[k]) for k in start)   # the student was trained


def _weights(path):
    from safetensors.torch import load_file

    out = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def _trainer(tmp_path, student, tok, kd=None):
    """The sft stage's trainer class for `student` (wrapped by `kd` when given) on a few prompt/completion rows."""
    import datasets
    from trl import SFTConfig

    rows = [sft.to_prompt_completion({"prompt": f"Compute {a} + {b}.", "solution": f"<think>{a}+{b}</think><answer>{a + b}</answer>"})
            for a, b in [(1, 2), (13, 274), (5, 60)]]
    cls = sft.trainer_class(student)
    if kd is not None:
        cls = kd.trainer_class(cls)
    args = SFTConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, max_length=64,
                     completion_only_loss=True, per_device_train_batch_size=3, disable_tqdm=True,
                     loss_type="nll")   # as the sft stage sets it
    tr = cls(model=student, args=args, train_dataset=datasets.Dataset.from_list(rows), processing_class=tok)
    batch = tr.data_collator([tr.train_dataset[i] for i in range(3)])
    return tr, batch


def _by_hand(student, teacher, batch, alpha, T, divergence="forward"):
    """α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE, both summed over completion tokens / their number
    (reverse: KL(s‖t); jsd: ½KL(t‖m) + ½KL(s‖m), m = ½(s + t))."""
    import torch.nn.functional as F

    ids, am, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    with torch.no_grad():
        s = student(input_ids=ids, attention_mask=am).logits[:, :-1].double()
        t = teacher(input_ids=ids, attention_mask=am).logits[:, :-1].double()
    target = labels[:, 1:]
    keep = target != -100
    n = keep.sum()
    log_s, log_t = torch.log_softmax(s / T, -1), torch.log_softmax(t / T, -1)
    if divergence == "forward":
        d = (log_t.exp() * (log_t - log_s)).sum(-1)
    elif divergence == "reverse":
        d = (log_s.exp() * (log_s - log_t)).sum(-1)
    else:
        log_m = torch.log(0.5 * log_s.exp() + 0.5 * log_t.exp())
        d = 0.5 * (log_t.exp() * (log_t - log_m)).sum(-1) + 0.5 * (log_s.exp() * (log_s - log_m)).sum(-1)
    kl = d[keep].sum() / n
    ce = F.cross_entropy(s[keep], target[keep], reduction="sum") / n
    return alpha * T * T * kl + (1 - alpha) * ce, n, float(kl), float(ce)


@pytest.mark.parametrize("kind", ["deepseek", "llama"])
def test_kd_loss_is_the_equation(tmp_path, nano_deepseek, tiny_model, kind):
    teacher = load_model(str(nano_deepseek))
    if kind == "deepseek":   # a second nano of its own weights; MTP off so the hard part is the plain CE
        from base_model import DeepSeekForCausalLM

        torch.manual_seed(1)
        student = DeepSeekForCausalLM(teacher.config.__class__(**{**teacher.config.to_dict(), "mtp_loss_weight": 0.0}))
    else:                    # any HF causal LM sharing the tokenizer: TRL's own SFTTrainer path
        student = load_model(str(tiny_model))
    tok = sft.load_tokenizer(str(nano_deepseek))
    kd = KD(teacher, alpha=0.5)
    tr, batch = _trainer(tmp_path, student, tok, kd)
    student.eval()   # no MoE balance term: the loss is exactly the two terms
    student.double(), teacher.double()   # random nets' KL is small: compare in fp64, not fp32 rounding
    assert (batch["labels"][:, 0] == -100).all() and (batch["attention_mask"] == 0).any()   # prompt masked, padding
    for alpha in (0.5, 1.0):
        for T in (1.0, 2.0):
            kd.alpha, kd.temperature = alpha, T
            want, n, kl, ce = _by_hand(student, teacher, batch, alpha, T)
            with torch.no_grad():
                got_mean = tr.compute_loss(student, dict(batch))
                got_sum = tr.compute_loss(student, dict(batch), num_items_in_batch=n)  # sum / the Trainer's count
            torch.testing.assert_close(got_mean.double(), want, rtol=1e-5, atol=0)
            torch.testing.assert_close(got_sum.double(), want, rtol=1e-5, atol=0)
            logged = tr._metrics["eval"]   # eval mode here; what the log line of a step averages
            assert logged["kd_loss"][-1] == pytest.approx(kl, rel=1e-6) and logged["ce_loss"][-1] == pytest.approx(ce, rel=1e-6)
            with torch.no_grad():   # one of two gradient-accumulation micro-batches: both terms are a half share
                half = tr.compute_loss(student, dict(batch), num_items_in_batch=2 * n)
            torch.testing.assert_close(half.double(), want / 2, rtol=1e-5, atol=0)
            assert logged["kd_loss"][-1] == pytest.approx(kl, rel=1e-6)   # still logged per token
    for divergence in ("reverse", "jsd"):   # TRL's generalized JSD at beta 1 and 0.5
        kd.alpha, kd.temperature, kd.divergence = 0.5, 2.0, divergence
        want = _by_hand(student, teacher, batch, 0.5, 2.0, divergence)[0]
        with torch.no_grad():
            torch.testing.assert_close(tr.compute_loss(student, dict(batch)).double(), want, rtol=1e-5, atol=0)


@pytest.mark.parametrize("kind", ["deepseek", "llama"])
def test_kd_alpha_zero_is_the_sft_loss(tmp_path, nano_deepseek, tiny_model, kind):
    """α=0 equals the sft stage's own loss: our model's CE + λ·MTP + balance (train mode, all on), or TRL's fused SFT
    loss. For our model the balance term stays out of the (1−α) mix: at α=1 the loss is T²·KL + balance."""
    teacher = load_model(str(nano_deepseek))
    torch.manual_seed(2)
    student = load_model(str(nano_deepseek)) if kind == "deepseek" else load_model(str(tiny_model))
    with torch.no_grad():
        for w in student.parameters():   # not the teacher's weights
            w.add_(0.02 * torch.randn_like(w))
    tok = sft.load_tokenizer(str(nano_deepseek))
    kd = KD(teacher, alpha=0.0, temperature=2.0)
    plain, batch = _trainer(tmp_path / "plain", student, tok)
    distil, _ = _trainer(tmp_path / "kd", student, tok, kd)
    student.train()
    n = (batch["labels"][:, 1:] != -100).sum()
    with torch.no_grad():
        want = plain.compute_loss(student, dict(batch), num_items_in_batch=n)
        got = distil.compute_loss(student, dict(batch), num_items_in_batch=n)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0)
    if kind == "deepseek":
        assert plain._metrics["train"]["mtp_loss"] and plain._metrics["train"]["aux_loss"]   # both terms present
        kd.alpha = 1.0
        with torch.no_grad():
            got = distil.compute_loss(student, dict(batch), num_items_in_batch=n)
            out = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        t_logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        want = 4.0 * kd_loss(out.logits, t_logits, batch["labels"], temperature=2.0) + out.aux_loss
        assert out.aux_loss > 0
        torch.testing.assert_close(got, want, rtol=1e-5, atol=0)


def test_kd_distill_pulls_student_to_teacher(tmp_path, nano_deepseek):
    """A teacher SFT-trained on countdown, distilled into a fresh nano twice on the same arithmetic traces: with
    kd_alpha=0.5 (T=2) and with kd_alpha=0 (SFT only). The traces say little of how the teacher would write them,
    its logits do: KD must bring the student much closer to the teacher than SFT alone (measured: KL 3.79 at init,
    1.45 after KD, 3.14 after SFT only). The teacher trains 40 steps: a 10-step nano teacher is near-uniform, as close
    to a random student as to anything, and the test would then measure nothing."""
    traces = [{"task": "arithmetic", "n": 16, "difficulty": 1}]
    student = {"kind": "distill", "from": "teacher", "student": "nano", "max_steps": 8, "per_device_train_batch_size": 4,
               "max_length": 64, "save_steps": 8, "learning_rate": 1e-2, "seed": 1, "traces": traces}   # seed 1: unlike the teacher
    stages = [{"name": "teacher", "kind": "sft", "max_steps": 40, "per_device_train_batch_size": 8, "max_length": 64, "learning_rate": 1e-2,
               "save_steps": 40, "data": [{"task": "countdown", "n": 80}]},
              {**student, "name": "kd", "kd_alpha": 0.5, "kd_temperature": 2.0},
              {**student, "name": "sft_only"}]
    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml.safe_dump({"name": "p", "seed": 0, "output_dir": str(tmp_path / "out"),
                                   "model": str(nano_deepseek), "stages": stages}))
    res = {r["name"]: r["metrics"] for r in run_pipeline(load_pipeline(cfg))}
    out = tmp_path / "out"
    m = res["kd"]
    logged = [json.loads(x) for x in (out / "kd" / "metrics.jsonl").read_text().splitlines()]
    assert m["steps"] == 8 and sum("kd_loss" in r and "ce_loss" in r for r in logged) == 8
    assert "first_kd_loss" not in res["sft_only"]

    # the student's KL to the teacher on the traces (chat-rendered, every token), at T=1
    teacher = load_model(str(out / "teacher" / "model")).eval()
    tok = sft.load_tokenizer(str(nano_deepseek))
    from r1lab.tasks import task_rows

    chats = [[{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["solution"]}]
             for r in task_rows("arithmetic", n=16, seed=0, difficulty=1)]
    enc = tok([tok.apply_chat_template(c, tokenize=False) for c in chats], return_tensors="pt", padding=True)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    with torch.no_grad():
        t_logits = teacher(**enc).logits

    def kl(path):
        with torch.no_grad():
            return float(kd_loss(load_model(str(path)).eval()(**enc).logits, t_logits, labels))

    init, kd, sft_only = kl(out / "kd" / "_student_init"), kl(out / "kd" / "model"), kl(out / "sft_only" / "model")
    assert kd < 0.5 * init and kd < 0.8 * sft_only, (init, kd, sft_only)
    assert m["final_kd_loss"] < m["first_kd_loss"]


def test_kd_needs_one_vocabulary(tmp_path, nano_deepseek, tiny_tok):
    from pipeline_helpers import make_tiny_llama
    from transformers import AutoConfig

    other = make_tiny_llama(tmp_path / "other", tiny_tok)
    cfg = AutoConfig.from_pretrained(other)
    cfg.vocab_size += 3
    cfg.save_pretrained(other)
    with pytest.raises(ValueError, match=r"vocab_size \d+, student .* vocab_size \d+"):
        check_vocab(str(nano_deepseek), str(other))
    check_vocab(str(nano_deepseek), str(nano_deepseek))
    with pytest.raises(ValueError, match="kd_divergence"):
        Params(traces=["task:arithmetic"], kd_alpha=0.5, kd_divergence="tv")


def test_param_count_leaves_out_mtp_and_overrides_size_the_student(tmp_path):
    """_n_params counts the served model (MTP modules excluded), and student_overrides resizes a preset student."""
    from types import SimpleNamespace

    from base_model import DeepSeekForCausalLM, get_preset
    from r1lab.stages.distill import _n_params, _student_path

    cfg = get_preset("nano")
    model = DeepSeekForCausalLM(cfg)
    model.save_pretrained(tmp_path / "t", safe_serialization=True)
    mtp = f"model.layers.{cfg.num_hidden_layers}."
    served = sum(v.numel() for k, v in model.state_dict().items() if not k.startswith(mtp))
    assert cfg.num_nextn_predict_layers == 1 and served < sum(v.numel() for v in model.state_dict().values())
    assert _n_params(str(tmp_path / "t")) == served

    class Tok:   # the two things _student_path reads from a tokenizer
        eos_token_id, pad_token_id = 1, 0

        def __len__(self):
            return 512

        def save_pretrained(self, path):
            pass

    ctx = SimpleNamespace(out_dir=tmp_path / "d", seed=0)
    small = Params(traces=["task:arithmetic"], student="nano")
    wide = Params(traces=["task:arithmetic"], student="nano", student_overrides={"hidden_size": 96})
    (tmp_path / "d").mkdir()
    n_small = _n_params(_student_path(ctx, small, Tok()))
    ctx.out_dir = tmp_path / "d2"
    (tmp_path / "d2").mkdir()
    path = _student_path(ctx, wide, Tok())
    assert json.loads((tmp_path / "d2" / "_student_init" / "config.json").read_text())["hidden_size"] == 96
    assert _n_params(path) > n_small
    with pytest.raises(ValueError, match="student_overrides"):
        _student_path(ctx, Params(traces=["task:arithmetic"], student=str(tmp_path / "t"),
                                  student_overrides={"hidden_size": 96}), Tok())


def test_student_from_an_earlier_stage(tmp_path):
    """`student: stage:NAME` starts the student from that stage's model, makes NAME an input, and must name an
    earlier stage."""
    from types import SimpleNamespace

    from r1lab.config import ConfigError
    from r1lab.stages.distill import _student_path

    first = {"name": "a", "kind": "distill", "student": "nano", "traces": [{"task": "arithmetic", "n": 4}]}
    second = {"name": "b", "kind": "distill", "student": "stage:a", "traces": [{"task": "arithmetic", "n": 4}]}
    cfg = tmp_path / "p.yaml"
    head = {"name": "p", "output_dir": str(tmp_path / "out"), "model": "nano", "tokenizer": {"vocab_size": 512}}
    cfg.write_text(yaml.safe_dump({**head, "stages": [first, second]}))
    b = load_pipeline(cfg).stage("b")
    assert b.depends_on() == ["a"]
    a_model = str(tmp_path / "out" / "a" / "model")
    ctx = SimpleNamespace(output_dir=tmp_path / "out", out_dir=tmp_path / "out" / "b", seed=0,
                          stage_model_paths=lambda: {"a": a_model})
    assert _student_path(ctx, b.params, None) == a_model      # the runner's record of stage a's model
    ctx.stage_model_paths = lambda: {}
    with pytest.raises(ValueError, match="stage 'a' has no saved model"):
        _student_path(ctx, b.params, None)
    cfg.write_text(yaml.safe_dump({**head, "stages": [second, first]}))
    with pytest.raises(ConfigError, match="earlier stage"):
        load_pipeline(cfg)
