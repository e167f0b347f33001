"""P5 and LlamaRec (`ctrbench_lmbaselines`): the papers' prompts on hand-built rows, P5's first-decoder-step score
against T5 run by hand, the LM loss on the response only, full finetuning against LoRA, LlamaRec's ID-model stage
(its score in the prompt, cached, cross-fitted), the conformance kit and end-to-end runs of tiny random models."""

from __future__ import annotations

import inspect
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from ctrbench.context import RunContext
from ctrbench.data.types import CTRData, Field
from ctrbench.errors import PluginError
from ctrbench.plugins import load_plugins
from ctrbench.spec import ComponentRef, RunSpec
from ctrbench.testing import check_method
from ctrbench.trainer import TrainConfig, Trainer
from ctrbench_datasets import movielens
from ctrbench_lmbaselines import llamarec as llamarec_module
from ctrbench_lmbaselines import plugin
from ctrbench_lmbaselines.config import LLAMAREC_TRAIN_DEFAULTS, P5_TRAIN_DEFAULTS, LlamaRecConfig, P5Config
from ctrbench_lmbaselines.llamarec import STAGE, LlamaRec, id_model_scores, llamarec, predict_rows
from ctrbench_lmbaselines.p5 import P5, p5
from ctrbench_lmbaselines.prompts import LlamaRecPrompts, p5_template
from ctrbench_sllm4ctr.method import batch_loss
from ctrbench_sllm4ctr.prompts import PromptBuilder

PLUGINS = load_plugins()
TRAIN = {"max_samples": 24, "eval_max_samples": 16, "batch_size": 8, "lr": 1e-3, "epochs": 1}
ID_FAST = {"id_epochs": 2, "id_batch_size": 128}
TINY_DNN = ("dnn", {"embed_dim": 4, "hidden_units": [8]})


def _numeric(data: CTRData) -> CTRData:
    """Ids and categories as numbers, which the tiny models' word-level tokenizer knows: prompts that differ."""
    return replace(data, vocab={k: [str(i) for i in range(len(v))] for k, v in data.vocab.items()})


def _ctx(data: CTRData, tmp_path, method: str, plm: str = "random-t5", plm_config: dict | None = None,
         ctr: tuple | None = None, **train) -> RunContext:
    ctr_ref = ComponentRef(ctr[0], dict(ctr[1])) if ctr else None
    spec = RunSpec("t", ComponentRef("tiny"), ComponentRef(method), ctr_ref, ComponentRef(plm, plm_config or {}),
                   train, 0)
    trainer = Trainer(TrainConfig(**train), torch.device("cpu"), seed=0)
    return RunContext(spec, data, PLUGINS, trainer, torch.device("cpu"), trainer.reporter, tmp_path)


def _timed_once(monkeypatch) -> None:
    """Inference timing (20 repeats of 128 prompts) is not under test here: one call, so runs stay short."""
    from ctrbench_sllm4ctr import method

    monkeypatch.setattr(method, "time_per_batch", lambda call, device, **_: (call(), 1.0)[1])


def _movielens_rows() -> CTRData:
    """Two users, three movies, MovieLens-100K's fields, through the real preprocessing."""
    inter = pd.DataFrame({"user_id": ["1", "1", "2", "1"], "item_id": ["10", "20", "10", "30"],
                          "rating": [5, 4, 5, 1], "timestamp": [1, 2, 3, 4]})
    users = pd.DataFrame({"user_id": ["1", "2"], "age": ["24", "53"], "gender": ["M", "F"],
                          "occupation": ["technician", "other"], "zip_code": ["85711", "94043"]})
    items = pd.DataFrame({"item_id": ["10", "20", "30"], "title": ["Toy Story", "GoldenEye", "Four Rooms"],
                          "release_year": ["1995", "1995", "1994"], "genres": ["Animation", "Action", "Thriller"]})
    return movielens.preprocess(inter, users, items, drop_rating=3, positive_min_rating=4, split=(0.5, 0.25, 0.25))


# -- P5: the prompt ---------------------------------------------------------------------------------------------


def test_p5_prompt_of_a_hand_built_row_is_p5s_yes_no_rating_question():
    data = _movielens_rows()
    rows = PromptBuilder(data, p5_template(data, P5Config().template))([0, 2])
    assert rows == [
        "user_1 : age is 24. gender is M. occupation is technician. zip code is 85711. \n "
        "item_10 : title is Toy Story. release year is 1995. genres is Animation. \n Will user_1 like item_10 ?",
        "user_2 : age is 53. gender is F. occupation is other. zip code is 94043. \n "
        "item_10 : title is Toy Story. release year is 1995. genres is Animation. \n Will user_2 like item_10 ?"]
    assert PromptBuilder(data, p5_template(data, "p5_id"))([3]) == ["Will user_1 like item_30 ?"]
    # other names and format strings are TallRec's machinery's
    assert PromptBuilder(data, p5_template(data, "user_{user_id} {title} ?"))([1]) == ["user_1 GoldenEye ?"]
    assert p5_template(data, "alpaca").startswith("Below is an instruction")


# -- P5: the score, the loss, the finetuning ---------------------------------------------------------------------


def test_p5_score_is_t5s_yes_no_softmax_at_the_first_decoder_step(tiny_data, tmp_path):
    """The method's p_yes equals T5 run by hand: the encoder on the prompt, the decoder on its start token alone,
    the full vocabulary's logits at that step picked at (No, Yes), a two-way softmax."""
    data = _numeric(tiny_data)
    ctx = _ctx(data, tmp_path, "p5", plm_config={"seed": 3}, **TRAIN)
    method = p5(max_length=40)
    lm, _ = method._model(ctx)
    prompts = method.prompts(ctx)
    rows = np.asarray(data.splits["test"][:12])
    got, _ = method._score(ctx, lm, prompts, rows)

    model = lm.base_model()
    model.eval()
    enc = lm.tokenizer(prompts(rows), padding=True, truncation=True, max_length=40, return_tensors="pt")
    start = torch.full((len(rows), 1), model.config.decoder_start_token_id, dtype=torch.long)
    with torch.no_grad():
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                       decoder_input_ids=start).logits[:, 0]
    want = torch.softmax(logits[:, [lm.no_id, lm.yes_id]].double(), dim=1)[:, 1].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.ptp(got) > 1e-4  # prompts that differ score differently: the comparison is not of constants
    assert model.config.decoder_start_token_id == model.config.pad_token_id  # T5's convention, as P5 runs it


def test_p5_loss_is_t5s_seq2seq_loss_on_the_answer_word_and_eos():
    """P5's objective: the decoder's cross-entropy on the response (answer, </s>) — what
    ``T5ForConditionalGeneration(labels=...)`` computes — and nothing of the prompt; flipped labels change it."""
    from ctrbench_plm.seq2seq_lm import random_t5

    lm = random_t5(seed=5)
    lm.eval()
    cfg = p5().config
    assert cfg.loss == "lm_response" and not cfg.adaptive_temperature and not cfg.label_matching
    ids, mask = lm.tokenize(["Will user _ 3 like item _ 7 ?", "user 5 : age is 30 . Will user _ 5 like item _ 2 ?"])
    y = torch.tensor([1.0, 0.0])
    with torch.no_grad():
        loss = batch_loss(cfg, lm, ids, mask, y)
        want = lm.base_model()(input_ids=ids, attention_mask=mask,
                               labels=torch.tensor([[lm.yes_id, 3], [lm.no_id, 3]])).loss
        flipped = batch_loss(cfg, lm, ids, mask, 1 - y)
    torch.testing.assert_close(loss, want, atol=1e-5, rtol=1e-5)
    assert abs(loss.item() - flipped.item()) > 1e-4


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_p5_trains_every_weight_or_only_lora_adapters(tiny_data, tmp_path, finetune):
    """``finetune: full`` (P5) counts and moves every weight of the T5; ``lora`` only the adapters."""
    data = _numeric(tiny_data)
    ctx = _ctx(data, tmp_path, "p5", **TRAIN)
    method = p5(max_length=40, finetune=finetune)
    lm, trainable = method._model(ctx)
    total = sum(p.numel() for p in lm.parameters())
    base = lm.base_model()
    before = base.get_encoder().block[0].layer[0].SelfAttention.q.weight.detach().clone()
    method._train(ctx, lm, method.prompts(ctx))
    after = base.get_encoder().block[0].layer[0].SelfAttention.q
    after = getattr(after, "base_layer", after).weight
    if finetune == "full":
        assert trainable == total and lm.lora_config is None
        assert not torch.equal(before, after)
    else:
        assert 0 < trainable < total / 4 and lm.lora_config["target_modules"] == ["q", "v"]
        assert torch.equal(before, after)


def test_p5_end_to_end_on_t5_and_on_a_causal_lm(tiny_data, tmp_path, monkeypatch):
    """Predictions for the scored rows only, from a T5 finetuned whole and from a causal LM with LoRA (the
    "P5 with a causal LM" variant); a masked LM is refused with a clear error."""
    _timed_once(monkeypatch)
    data = _numeric(tiny_data)
    t5 = p5(max_length=40).run(_ctx(data, tmp_path, "p5", **TRAIN))
    llama = p5(max_length=40, finetune="lora", lora_targets=["q_proj", "v_proj"]).run(
        _ctx(data, tmp_path, "p5", plm="random-llama", **TRAIN))
    for preds in (t5, llama):
        scored = np.isfinite(preds.test)
        assert scored.sum() == 16 and np.isfinite(preds.valid).sum() == 16
        assert ((preds.test[scored] > 0) & (preds.test[scored] < 1)).all()
        assert preds.extra["train_steps"] == 3
    assert t5.trainable_params == t5.n_params and llama.trainable_params < llama.n_params
    with pytest.raises(PluginError, match=r"'random-bert' is a masked_lm"):
        p5(max_length=40).run(_ctx(data, tmp_path, "p5", plm="random-bert", **TRAIN))
    with pytest.raises(PluginError, match=r"loss 'lm_full' .* needs a causal LM"):
        p5(loss="lm_full").run(_ctx(data, tmp_path, "p5", **TRAIN))


# -- LlamaRec: the prompt ------------------------------------------------------------------------------------------

# user 1 rates items 1..13 at times 1..13, item 14 at time 14 (the target row), item 15 at time 14 too (same second:
# not "before" the target) and item 16 at time 15 (after); user 2 rates item 3 at time 12. Rows out of time order.
_LABELS = {1: 1, 2: 0, 3: 1, 4: 1, 5: 0, 6: 1, 7: 0, 8: 0, 9: 1, 10: 1, 11: 0, 12: 1, 13: 0}


def _hand_built_user() -> tuple[CTRData, int]:
    rows = [(1, i, i, _LABELS[i]) for i in range(1, 14)] + [(1, 14, 14, 1), (1, 15, 14, 0), (1, 16, 15, 1),
                                                           (2, 3, 12, 0)]
    rows = [rows[k] for k in np.random.default_rng(0).permutation(len(rows))]
    user, item, ts, y = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
    fields = [Field("user_id", "categorical", 3, "user id"), Field("item_id", "categorical", 17, "item id"),
              Field("title", "categorical", 17, "title"), Field("release_year", "categorical", 4, "release year")]
    data = CTRData(
        name="movielens-hand-built", fields=fields, X=np.stack([user, item, item, 1 + item % 3], 1),
        y=y.astype(np.float32), ts=ts, user=user, item=item,
        splits={"train": np.arange(10), "valid": np.arange(10, 13), "test": np.arange(13, 17)},
        vocab={"user_id": ["unknown", "101", "102"], "item_id": ["unknown"] + [str(500 + i) for i in range(1, 17)],
               "title": ["unknown"] + [f"Film {chr(64 + i)}" for i in range(1, 17)],
               "release_year": ["unknown", "1990", "1991", "1992"]})
    return data, next(k for k, r in enumerate(rows) if r[:3] == (1, 14, 14))


def _title(i: int) -> str:
    return f"Film {chr(64 + i)} ({1990 + i % 3})"


def test_llamarec_prompt_of_a_hand_built_user_is_llamarecs_frame_with_the_score():
    data, target = _hand_built_user()
    scores = np.linspace(0.05, 0.95, data.num_samples)
    scores[target] = 0.73456
    history = " \n ".join(f"({k}) {_title(i)}" for k, i in enumerate(range(4, 14), start=1))  # the last 10, in order
    expected = (
        "### Instruction:\nGiven the user history in chronological order and a CTR model's click probability, "
        "identify whether the user will like the target movie by answering \"Yes.\" or \"No.\".\n\n"
        f"### Input:\nUser history: {history}; \n Target movie: \"{_title(14)}\"; \n "
        "Click probability predicted by a CTR model: 0.73\n\n### Response:\n")
    assert LlamaRecPrompts(data, "llamarec", 10, scores, 2)([target]) == [expected]
    assert "0.735" in LlamaRecPrompts(data, "llamarec", 10, scores, 3)([target])[0]
    first = next(k for k in range(data.num_samples) if data.ts[k] == 1)
    assert "User history: none; \n Target movie: \"Film A (1991)\"" in LlamaRecPrompts(data, "llamarec", 10,
                                                                                       scores, 2)([first])[0]
    # TallRec's and SLLM4CTR's frames carry the score just before their response cue
    alpaca = LlamaRecPrompts(data, "alpaca", 10, scores, 2)([target])[0]
    assert alpaca.endswith("?\nClick probability predicted by a CTR model: 0.73\n\n### Response:\n")
    sllm = LlamaRecPrompts(data, "sllm4ctr", 10, scores, 2)([target])[0]
    assert sllm.endswith("Click probability predicted by a CTR model: 0.73. Response:")
    own = LlamaRecPrompts(data, "{title}: {ctr_score}", 10, scores, 1)([target])
    assert own == ["Film N: 0.7"]
    with pytest.raises(ValueError, match=r"\{ctr_score\}"):
        LlamaRecConfig(template="{title}? Answer:")


# -- LlamaRec: stage 1 ---------------------------------------------------------------------------------------------


def test_llamarec_prompt_holds_the_id_models_own_prediction(tiny_data, tmp_path):
    """Each row's prompt carries the stage-1 model's click probability for that row: the model saved by the stage,
    loaded into a fresh backbone, predicts exactly the scores, and the prompt writes them with score_digits."""
    data = _numeric(tiny_data)
    ctx = _ctx(data, tmp_path, "llamarec", plm="random-llama", ctr=TINY_DNN, **TRAIN)
    cfg = LlamaRecConfig(max_length=64, **ID_FAST)
    scores, info, folder = id_model_scores(ctx, cfg)
    model = ctx.build_ctr()
    model.load_state_dict(torch.load(folder / "ctr.pt", weights_only=True))
    trainer = Trainer(TrainConfig(), torch.device("cpu"))
    rows = np.concatenate([data.splits["train"][:5], data.splits["test"][:5]])
    own = predict_rows(trainer, model, data, rows)
    np.testing.assert_allclose(scores[rows], own, rtol=1e-6)
    assert np.ptp(own) > 1e-3 and info["rows"] == len(data.splits["train"])
    prompts = LlamaRec(cfg).prompts(ctx)(rows)
    for text, p in zip(prompts, own, strict=True):
        assert f"Click probability predicted by a CTR model: {p:.2f}\n" in text


def test_llamarec_id_model_is_what_the_ctr_method_trains(tiny_data, tmp_path):
    """Stage 1 with the ID baselines' settings is `method: ctr` with them: the same test predictions."""
    data = _numeric(tiny_data)
    cfg = LlamaRecConfig(**ID_FAST)
    scores = id_model_scores(_ctx(data, tmp_path, "llamarec", plm="random-llama", ctr=TINY_DNN, **TRAIN), cfg)[0]
    id_train = {k: v for k, v in cfg.id_train().items() if v is not None}
    baseline = PLUGINS.registry("methods").get("ctr").create().run(
        _ctx(data, tmp_path, "ctr", plm="random-llama", ctr=TINY_DNN, **id_train))
    np.testing.assert_allclose(scores[data.splits["test"]], baseline.test, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(scores[data.splits["valid"]], baseline.valid, rtol=1e-6, atol=1e-7)


def test_llamarec_id_stage_is_computed_once_per_key(tiny_data, tmp_path, monkeypatch):
    calls = []
    real = llamarec_module.train_id_model

    def counted(ctx, trainer, rows, name):
        calls.append(len(rows))
        return real(ctx, trainer, rows, name)

    monkeypatch.setattr(llamarec_module, "train_id_model", counted)
    data = _numeric(tiny_data)
    cfg = LlamaRecConfig(**ID_FAST)
    first = id_model_scores(_ctx(data, tmp_path, "llamarec", plm="random-llama", ctr=TINY_DNN, **TRAIN), cfg)[0]
    again = id_model_scores(_ctx(data, tmp_path, "llamarec", plm="random-llama", ctr=TINY_DNN, **TRAIN), cfg)[0]
    assert len(calls) == 1 and np.array_equal(first, again)
    assert len(list(tmp_path.glob(f"{STAGE}-*"))) == 1
    # the LLM's train.* do not touch the stage; the ID model's own settings do
    id_model_scores(_ctx(data, tmp_path, "llamarec", plm="random-llama", ctr=TINY_DNN, **{**TRAIN, "lr": 5e-3}), cfg)
    assert len(calls) == 1
    id_model_scores(_ctx(data, tmp_path, "llamarec", plm="random-llama", ctr=TINY_DNN, **TRAIN),
                    replace(cfg, id_lr=3e-3))
    assert len(calls) == 2


def test_cross_fitting_scores_each_training_row_with_a_model_that_never_saw_it(tiny_data, tmp_path, monkeypatch):
    trained_on = []
    real = llamarec_module.train_id_model

    def recorded(ctx, trainer, rows, name):
        trained_on.append(set(rows.tolist()))
        return real(ctx, trainer, rows, name)

    monkeypatch.setattr(llamarec_module, "train_id_model", recorded)
    data = _numeric(tiny_data)
    ctx = _ctx(data, tmp_path, "llamarec", plm="random-llama", ctr=TINY_DNN, **TRAIN)
    plain = id_model_scores(ctx, LlamaRecConfig(**ID_FAST))[0]
    crossed = id_model_scores(ctx, LlamaRecConfig(cross_fit_folds=3, **ID_FAST))[0]
    train = set(data.splits["train"].tolist())
    full, folds = trained_on[1], trained_on[2:]
    assert full == train and len(folds) == 3
    held_out = [train - f for f in folds]
    assert all(h and not (h & f) for h, f in zip(held_out, folds, strict=True))  # scored rows unseen by their model
    assert set().union(*held_out) == train and sum(map(len, held_out)) == len(train)  # a partition
    other = np.setdiff1d(np.arange(data.num_samples), data.splits["train"])
    np.testing.assert_array_equal(crossed[other], plain[other])  # valid / test: the model of all training rows
    tr = data.splits["train"]
    assert np.abs(crossed[tr] - plain[tr]).min() > 0  # every training row rescored out of fold


# -- LlamaRec: the loss, the run -------------------------------------------------------------------------------------


def test_llamarec_loss_covers_only_the_response_tokens():
    """LlamaRec trains on the last two tokens (answer, EOS): the method's loss equals the HF causal LM's
    cross-entropy with every prompt position masked out, and differs from the loss on the whole sequence."""
    from ctrbench_plm.causal_lm import random_llama

    lm = random_llama(seed=4)
    cfg = llamarec().config
    assert cfg.loss == "lm_response"
    ids, mask = lm.tokenize(["user 3 liked movie 7 ? Answer :", "movie 2 is 0 . 73 ? Answer :"])
    y = torch.tensor([0.0, 1.0])
    resp = lm.response_ids(y)
    full = torch.cat([ids, resp], 1)
    full_mask = torch.cat([mask, torch.ones_like(resp)], 1)
    labels = torch.full_like(full, -100)
    labels[:, ids.shape[1]:] = resp  # the response only
    with torch.no_grad():
        logits = lm.model(input_ids=full, attention_mask=full_mask,
                          position_ids=(full_mask.cumsum(-1) - 1).clamp(min=0)).logits
        want = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(),
                                                 ignore_index=-100)
        got = batch_loss(cfg, lm, ids, mask, y)
        on_everything = batch_loss(replace(cfg, loss="lm_full"), lm, ids, mask, y)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert abs(got.item() - on_everything.item()) > 1e-3


def test_llamarec_end_to_end_reuses_its_stage_and_reports_the_id_model(tiny_data, tmp_path, monkeypatch):
    calls = []
    real = llamarec_module.fit_id_stage
    monkeypatch.setattr(llamarec_module, "fit_id_stage", lambda *a: (calls.append(1), real(*a))[1])
    _timed_once(monkeypatch)
    data = _numeric(tiny_data)
    ctx = _ctx(data, tmp_path, "llamarec", plm="random-llama", ctr=TINY_DNN, **TRAIN)
    preds = llamarec(max_length=96, history_items=3, **ID_FAST).run(ctx)
    scored = np.isfinite(preds.test)
    assert scored.sum() == 16 and ((preds.test[scored] > 0) & (preds.test[scored] < 1)).all()
    assert 0 < preds.trainable_params < preds.n_params and preds.extra["train_steps"] == 3
    assert 0 <= preds.extra["id_test_auc"] <= 1 and preds.extra["id_train_seconds"] > 0
    LlamaRec(LlamaRecConfig(max_length=96, history_items=3, **ID_FAST)).prompts(ctx)  # a second run's stage 1
    assert len(calls) == 1  # read from the first run's folder


# -- config, registration, conformance ----------------------------------------------------------------------------


def test_defaults_are_the_papers_and_bad_values_are_refused():
    assert p5().train_defaults == P5_TRAIN_DEFAULTS == {"epochs": 10, "batch_size": 32, "lr": 1e-3,
                                                        "weight_decay": 0.01, "schedule": "linear", "warmup": 0.05,
                                                        "grad_clip": 1.0}
    assert llamarec().train_defaults == LLAMAREC_TRAIN_DEFAULTS
    rec = llamarec().config
    assert (rec.lora_r, rec.lora_alpha, rec.lora_dropout, rec.lora_targets, rec.history_items) == (
        8, 32, 0.05, ("q_proj", "v_proj"), 20)
    assert (P5Config().finetune, P5Config().max_length, P5Config().template) == ("full", 512, "p5")
    with pytest.raises(ValueError, match=r"finetune must be one of"):
        P5Config(finetune="adapters")
    with pytest.raises(ValueError, match=r"cross_fit_folds must be >= 0"):
        LlamaRecConfig(cross_fit_folds=-1)
    with pytest.raises(ValueError, match=r"loss must be one of"):
        LlamaRecConfig(loss="mse")
    assert isinstance(p5(), P5) and isinstance(llamarec(), LlamaRec)


@pytest.mark.parametrize(("name", "real"), [("p5", p5), ("llamarec", llamarec)])
def test_registered_factories_have_the_methods_signature(name, real):
    entry = PLUGINS.registry("methods").get(name)
    assert entry.factory is getattr(plugin, name)
    assert inspect.signature(entry.factory) == inspect.signature(real)
    assert entry.metadata["needs"].ctr is (name == "llamarec")


@pytest.mark.parametrize(("name", "family"), [("p5", "seq2seq_lm"), ("p5", "causal_lm"), ("llamarec", "causal_lm")])
def test_methods_pass_the_conformance_kit(name, family):
    entry = PLUGINS.registry("methods").get(name)
    check_method(entry.factory, config=entry.metadata["quick_config"], needs=entry.metadata["needs"], family=family,
                 plugins=PLUGINS, name=name)
