"""TallRec / SLLM4CTR: the causal-LM wrapper, Eq. 2 and Eq. 4 (raw and normalised E) against direct computations,
the papers' prompts on hand-built data, the LM loss against HF logits with a hand-built label mask, evaluation
batches that do not depend on row order, and end-to-end runs of tiny random models (built here, no files)."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

from ctrbench import cli
from ctrbench.context import RunContext
from ctrbench.data.types import CTRData, Field
from ctrbench.errors import DataError, PluginError
from ctrbench.plugins import load_plugins
from ctrbench.spec import ComponentRef, RunSpec
from ctrbench.trainer import TrainConfig, Trainer
from ctrbench_plm.causal_lm import CausalLM, load_causal_lm, random_llama, random_word_tokenizer
from ctrbench_plm.yes_no import answer_logits
from ctrbench_sllm4ctr import method as method_module
from ctrbench_sllm4ctr.config import LLMCTRConfig, TallRecConfig
from ctrbench_sllm4ctr.losses import adaptive_temperature, label_matching_loss, temperature_distribution
from ctrbench_sllm4ctr.method import batch_loss, evaluation_batches, sllm4ctr, tallrec, yes_no_loss
from ctrbench_sllm4ctr.prompts import PromptBuilder, generic_template

# -- Eq. 4 against NumPy ------------------------------------------------------------------------------


def _eq4_numpy(e: np.ndarray, p: np.ndarray, alpha: float, terms: str = "both", normalize: bool = False) -> float:
    """Eq. 4 written out literally: d x d log-determinants, Pi_k as diagonal matrices; ``normalize`` divides each
    row of E by its Euclidean norm first (MCR²'s unit-sphere features)."""
    if normalize:
        e = e / np.sqrt((e ** 2).sum(axis=1, keepdims=True))
    b, d = e.shape
    eye = np.eye(d)
    total = 0.0
    if terms in ("both", "compress"):
        for pi in (np.diag(1 - p), np.diag(p)):
            tr = np.trace(pi)
            total += tr / (2 * b) * np.linalg.slogdet(eye + d / (tr * alpha ** 2) * e.T @ pi @ e)[1]
    if terms in ("both", "expand"):
        total -= 0.5 * np.linalg.slogdet(eye + d / (b * alpha ** 2) * e.T @ e)[1]
    return total


def test_answer_logits_are_float32_under_bf16_autocast_so_close_prompts_do_not_tie():
    """Scoring runs under autocast too: the Yes/No logits must be the float32 product, or prompts whose margins
    differ by less than a bf16 step (0.06 at a logit of 10) get one probability and AUC is computed over ties."""
    rng = np.random.default_rng(3)
    torch.manual_seed(0)
    head = torch.nn.Linear(64, 50, bias=True)
    base = 3.0 * rng.normal(size=(1, 64))
    hidden = torch.tensor(base + 3e-3 * rng.normal(size=(300, 64)), dtype=torch.float32)  # 300 near-equal prompts
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = answer_logits(hidden, head, (7, 11))
    w, b = head.weight.detach().double().numpy()[[7, 11]], head.bias.detach().double().numpy()[[7, 11]]
    expected = hidden.double().numpy() @ w.T + b  # independent float64 reference
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    margin = (got[:, 1] - got[:, 0]).detach().numpy()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rounded = (hidden @ head.weight[[7, 11]].t()).float().detach().numpy()  # the product autocast would give
    assert len(np.unique(rounded[:, 1] - rounded[:, 0])) < 30  # the ties this guards against...
    assert len(np.unique(margin)) >= 295  # ...gone (a few exact float32 coincidences remain possible)


@pytest.mark.parametrize("terms", ["both", "compress", "expand"])
@pytest.mark.parametrize("b,d,alpha", [(8, 16, 0.5), (16, 6, 1.0), (5, 32, 0.1)])
def test_label_matching_loss_equals_numpy_eq4(terms, b, d, alpha):
    rng = np.random.default_rng(b * d)
    e = rng.normal(size=(b, d))
    p = rng.uniform(0.05, 0.95, size=b)
    got = label_matching_loss(torch.tensor(e, dtype=torch.float64), torch.tensor(p), alpha, terms).item()
    assert got == pytest.approx(_eq4_numpy(e, p, alpha, terms), rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("normalize", [False, True])
def test_eq4_and_eq2_stay_float32_under_bf16_autocast(normalize):
    """A training step runs under autocast (bf16 on CUDA, and on the CPU with train.cpu_amp): Eq. 4's Gram matrix
    and Eq. 2's similarities must not drop to bf16 with it. Hidden states like a causal LM's last layer (large
    norms, strongly correlated rows), batch 8, d 576."""
    rng = np.random.default_rng(7)
    e = 40.0 * (rng.normal(size=(1, 576)) + 0.3 * rng.normal(size=(8, 576)))
    prompt = e + rng.normal(size=e.shape)
    p = rng.uniform(0.05, 0.95, size=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = label_matching_loss(torch.tensor(e, dtype=torch.float32), torch.tensor(p, dtype=torch.float32), 0.1,
                                   normalize=normalize)
        dist = temperature_distribution(torch.tensor(prompt, dtype=torch.float32), torch.tensor(e, dtype=torch.float32))
    assert loss.dtype == torch.float32 and dist.dtype == torch.float32
    assert loss.item() == pytest.approx(_eq4_numpy(e, p, 0.1, normalize=normalize), rel=1e-3, abs=1e-3)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    sim = unit(e) @ unit(prompt).T
    expected = np.exp(sim) / np.exp(sim).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(dist.numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize("terms", ["both", "compress", "expand"])
@pytest.mark.parametrize("b,d,alpha", [(8, 16, 0.5), (16, 6, 1.0), (5, 32, 0.1)])
def test_normalized_label_matching_loss_equals_numpy_eq4_on_unit_rows(terms, b, d, alpha):
    rng = np.random.default_rng(b * d + 1)
    e = rng.normal(size=(b, d)) * rng.uniform(0.1, 30, size=(b, 1))  # rows of very different norms
    p = rng.uniform(0.05, 0.95, size=b)
    got = label_matching_loss(torch.tensor(e), torch.tensor(p), alpha, terms, normalize=True).item()
    assert got == pytest.approx(_eq4_numpy(e, p, alpha, terms, normalize=True), rel=1e-4, abs=1e-4)
    assert got != pytest.approx(_eq4_numpy(e, p, alpha, terms), rel=1e-3)  # normalising changes the loss
    scaled = label_matching_loss(torch.tensor(e * 7.0), torch.tensor(p), alpha, terms, normalize=True).item()
    # and makes it blind to the embeddings' scale, to float32 round-off of the log-dets (7e-6 relative on a Xeon
    # with AVX-512, 2026-12-05; unnormalised, a 7x scale moves it by 1.4e-3 relative, 70x the tolerance)
    assert scaled == pytest.approx(got, rel=2e-5, abs=2e-5)


def test_normalized_eq4_depends_on_alpha_for_alike_embeddings():
    """What the sensitivity suite's normalised arms rest on: click embeddings that point alike (as an LLM's last
    hidden states do) and are normalised leave the cancellation regime for alpha near 1, so alpha changes the loss
    and its gradient; unnormalised (norm ~70) they do not."""
    torch.manual_seed(0)
    p = torch.rand(8)
    e = torch.randn(1, 576) * 3 + 0.3 * torch.randn(8, 576)

    def loss_and_grad(alpha: float, normalize: bool) -> tuple[float, float]:
        x = e.clone().requires_grad_(True)
        loss = label_matching_loss(x, p, alpha, normalize=normalize)
        loss.backward()
        return loss.item(), x.grad.norm().item()

    raw = [loss_and_grad(a, False) for a in (1.0, 0.01)]
    unit = [loss_and_grad(a, True) for a in (1.0, 0.01)]
    assert abs(raw[0][0] - raw[1][0]) < 1e-2
    assert unit[1][0] - unit[0][0] < -0.5 and unit[0][1] > 100 * unit[1][1]


def test_label_matching_loss_rewards_compact_classes():
    """Same embeddings, labels matching the clusters (p near the truth) vs shuffled: the matched loss is lower."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(2, 8)) * 3
    labels = np.array([0, 1] * 8)
    e = torch.tensor(centers[labels] + 0.1 * rng.normal(size=(16, 8)))
    matched = label_matching_loss(e, torch.tensor(np.where(labels == 1, 0.99, 0.01)), 1.0)
    mixed = label_matching_loss(e, torch.tensor(np.where(rng.permutation(labels) == 1, 0.99, 0.01)), 1.0)
    assert matched.item() < mixed.item()


# -- Eq. 2 --------------------------------------------------------------------------------------------


def test_temperature_is_a_softmax_over_the_batch():
    torch.manual_seed(0)
    prompt, click = torch.randn(6, 10), torch.randn(6, 10)
    dist = temperature_distribution(prompt, click)
    assert dist.shape == (6, 6)
    torch.testing.assert_close(dist.sum(1), torch.ones(6))  # sums to 1 over the batch
    cos = torch.nn.functional.cosine_similarity(click[2].unsqueeze(0), prompt, dim=-1)
    torch.testing.assert_close(dist[2], torch.softmax(cos, 0))  # row i: s(e_c_j, e_L_i) over j
    t = adaptive_temperature(prompt, click, scale="none")
    torch.testing.assert_close(t, torch.diagonal(dist))
    torch.testing.assert_close(adaptive_temperature(prompt, click, scale="batch"), 6 * t)


def test_temperature_is_one_when_prompts_are_indistinguishable():
    prompt = torch.randn(1, 10).repeat(5, 1)
    t = adaptive_temperature(prompt, torch.randn(5, 10), scale="batch")
    torch.testing.assert_close(t, torch.ones(5))


# -- the causal-LM wrapper ------------------------------------------------------------------------------


def test_yes_no_must_be_single_tokens():
    llama = random_llama(seed=0)
    assert llama.yes_id != llama.no_id
    assert llama.tokenizer.convert_ids_to_tokens([llama.yes_id, llama.no_id]) == ["Yes", "No"]
    with pytest.raises(PluginError, match=r"'maybe not' is 2 tokens"):
        CausalLM(llama.model, random_word_tokenizer(["maybe", "not"]), name="t", answer_tokens=("maybe not", " No"))


def test_left_padding_gives_the_unpadded_scores():
    lm = random_llama(seed=1)
    texts = ["User 3 liked movie 7 ? Answer Yes or No . Answer :", "Answer :"]
    ids, mask = lm.tokenize(texts)
    assert mask[1, 0] == 0 and mask[1, -1] == 1  # left padded
    with torch.no_grad():
        batch = lm(ids, mask)
        for i, text in enumerate(texts):
            one = lm(*lm.tokenize([text]))
            torch.testing.assert_close(batch.logits[i], one.logits[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(batch.prompt[i], one.prompt[0], atol=1e-5, rtol=1e-5)


def test_scores_equal_the_full_lm_head_at_the_last_position():
    lm = random_llama(seed=2)
    ids, mask = lm.tokenize(["will user 5 like movie 9 ? Answer :"])
    with torch.no_grad():
        full = lm.model(input_ids=ids, attention_mask=mask).logits[0, -1]
        out = lm(ids, mask)
    torch.testing.assert_close(out.logits[0], full[[lm.no_id, lm.yes_id]], atol=1e-5, rtol=1e-5)


def test_only_lora_parameters_receive_gradients_and_change():
    lm = random_llama(seed=3)
    n = lm.add_lora(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj"))
    assert n == sum(p.numel() for name, p in lm.named_parameters() if "lora_" in name) > 0
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    opt = torch.optim.AdamW(lm.trainable_parameters(), lr=1e-2)
    out = lm(*lm.tokenize(["user 1 like movie 2 ? Answer :", "user 2 ? Answer :"]))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(out.margin, torch.tensor([1.0, 0.0]))
    loss.backward()
    with_grad = {name for name, p in lm.named_parameters() if p.grad is not None}
    assert with_grad and all("lora_" in name for name in with_grad)
    opt.step()
    changed = {k for k, v in lm.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all("lora_" in k for k in changed)


def test_lora_targets_are_checked():
    with pytest.raises(PluginError, match=r"'c_attn'"):
        random_llama().add_lora(target_modules=("c_attn",))


def test_loads_from_a_local_folder_like_the_hub(tmp_path):
    lm = random_llama(seed=4)
    lm.model.save_pretrained(tmp_path / "m")
    lm.tokenizer.save_pretrained(tmp_path / "m")
    again = load_causal_lm(tmp_path / "m", name="local", local=True)
    ids, mask = lm.tokenize(["user 1 ? Answer :"])
    with torch.no_grad():
        torch.testing.assert_close(again(ids, mask).logits, lm(ids, mask).logits)
    with pytest.raises(DataError, match=r"local model folder .*nope does not exist"):
        load_causal_lm(tmp_path / "nope", name="local", local=True)


@pytest.mark.parametrize("name", ["llama-2-7b", "llama-3-8b", "qwen2.5-0.5b", "smollm2-135m"])
def test_hub_names_load_from_a_local_folder(tmp_path, name):
    """What a user without internet does: the registered name with path= a folder laid out like the hub's."""
    lm = random_llama(seed=5)
    lm.model.save_pretrained(tmp_path / "hub")
    lm.tokenizer.save_pretrained(tmp_path / "hub")
    loaded = load_plugins().registry("plm").get(name).create(path=str(tmp_path / "hub"), dtype="float32")
    assert loaded.family == "causal_lm" and loaded.name == name
    ids, mask = lm.tokenize(["user 7 ? Answer :"])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, mask).logits, lm(ids, mask).logits)


# -- prompts ------------------------------------------------------------------------------------------


def test_prompt_template_names_fields_and_history(tiny_data):
    from dataclasses import replace

    from ctrbench.data.types import Field

    hist = np.zeros((tiny_data.num_samples, 3), dtype=np.int64)
    hist[5] = [4, 2, 0]
    data = replace(tiny_data, sequences={"history": hist},
                   sequence_fields=[Field("history", "sequence", 30, "recently liked", shares="item_id")])
    builder = PromptBuilder(data, "{user_id} saw {history}; {item_id}? Answer:")
    row = int(np.flatnonzero(np.arange(data.num_samples) == 5)[0])
    u, i = data.X[row, 0], data.X[row, 1]
    assert builder([row]) == [f"u{u} saw i4, i2; i{i}? Answer:"]
    assert "user id is {user_id}." in generic_template(data)
    with pytest.raises(DataError, match=r"no field\(s\) \['rating'\]"):
        PromptBuilder(data, "{rating} Answer:")


# A user of a hand-built MovieLens-like dataset: user 1 rates items 1..13 at times 1..13 (labels below), item 14 at
# time 14 (the target row), item 15 at time 14 too (same second: not "before" the target) and item 16 at time 15
# (after); user 2 rates item 3 at time 12. Rows are stored out of time order: only the timestamps count.
_LABELS = {1: 1, 2: 0, 3: 1, 4: 1, 5: 0, 6: 1, 7: 0, 8: 0, 9: 1, 10: 1, 11: 0, 12: 1, 13: 0}


def _hand_built_user() -> tuple[CTRData, int]:
    rows = [(1, i, i, _LABELS[i]) for i in range(1, 14)] + [(1, 14, 14, 1), (1, 15, 14, 0), (1, 16, 15, 1),
                                                           (2, 3, 12, 0)]
    rows = [rows[k] for k in np.random.default_rng(0).permutation(len(rows))]
    user, item, ts, y = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
    age = np.where(user == 1, 1, 2)
    year = 1 + item % 3
    fields = [Field("user_id", "categorical", 3, "user id"), Field("item_id", "categorical", 17, "item id"),
              Field("title", "categorical", 17, "title"), Field("release_year", "categorical", 4, "release year"),
              Field("age", "categorical", 3, "age")]
    data = CTRData(
        name="movielens-hand-built", fields=fields, X=np.stack([user, item, item, year, age], 1),
        y=y.astype(np.float32), ts=ts, user=user, item=item, splits={"train": np.arange(10), "valid": np.arange(10, 13),
                                             "test": np.arange(13, 17)},
        vocab={"user_id": ["unknown", "101", "102"], "item_id": ["unknown"] + [str(500 + i) for i in range(1, 17)],
               "title": ["unknown"] + [f"Film {chr(64 + i)}" for i in range(1, 17)],
               "release_year": ["unknown", "1990", "1991", "1992"], "age": ["unknown", "47", "23"]})
    target = next(k for k, r in enumerate(rows) if r[:3] == (1, 14, 14))
    return data, target


def _title(i: int) -> str:
    return f'"Film {chr(64 + i)} ({1990 + i % 3})"'


def test_tallrec_prompt_of_a_hand_built_user_is_tallrecs_alpaca_text():
    data, target = _hand_built_user()
    last10 = range(4, 14)  # the 10 interactions before time 14, oldest first; 1..3 fall off, 15 and 16 are not before
    liked = ", ".join(_title(i) for i in last10 if _LABELS[i] == 1)
    disliked = ", ".join(_title(i) for i in last10 if _LABELS[i] == 0)
    expected = (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nGiven the user's preference and unpreference, identify whether the user will like the "
        "target movie by answering \"Yes.\" or \"No.\".\n\n"
        f"### Input:\nUser Preference: {liked}\nUser Unpreference: {disliked}\n"
        f"Whether the user will like the target movie {_title(14)}?\n\n"
        "### Response:\n")
    assert liked == '"Film D (1991)", "Film F (1990)", "Film I (1990)", "Film J (1991)", "Film L (1990)"'
    assert disliked == '"Film E (1992)", "Film G (1991)", "Film H (1992)", "Film K (1992)", "Film M (1991)"'
    builder = PromptBuilder(data, TallRecConfig().template, TallRecConfig().history_items)
    prompt = builder([target])[0]
    assert prompt == expected
    for leak in ("101", "514", "47", "Film C", "Film O", "Film P"):  # ids, age, items too old / same time / later
        assert leak not in prompt
    first = next(k for k in range(data.num_samples) if data.ts[k] == 1)
    assert "User Preference: \nUser Unpreference: \nWhether the user will like the target movie " \
           '"Film A (1991)"?' in builder([first])[0]
    assert PromptBuilder(data, "{liked}|{disliked}|{target}", history_items=2)([target]) == [
        f'{_title(12)}|{_title(13)}|{_title(14)}']


def test_sllm4ctr_prompt_is_the_papers_frame_with_the_datasets_features():
    import pandas as pd

    from ctrbench_datasets import movielens

    inter = pd.DataFrame({"user_id": ["1", "1", "2", "1"], "item_id": ["10", "20", "10", "30"],
                          "rating": [5, 4, 5, 1], "timestamp": [1, 2, 3, 4]})
    users = pd.DataFrame({"user_id": ["1", "2"], "age": ["24", "53"], "gender": ["M", "F"],
                          "occupation": ["technician", "other"], "zip_code": ["85711", "94043"]})
    items = pd.DataFrame({"item_id": ["10", "20", "30"], "title": ["Toy Story", "GoldenEye", "Four Rooms"],
                          "release_year": ["1995", "1995", "1994"], "genres": ["Animation", "Action", "Thriller"]})
    data = movielens.preprocess(inter, users, items, drop_rating=3, positive_min_rating=4, split=(0.5, 0.25, 0.25))
    assert PromptBuilder(data, LLMCTRConfig().template)([0]) == [
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "Instruction: Given the user's and item's attributes, identify whether the user will like the target item "
        "by answering \"Yes.\" or \"No.\"\n\n"
        "Input: Here is the information of the user 1: age is 24. gender is M. occupation is technician. zip code is "
        "85711. Here is the information of the movie 10: title is Toy Story. release year is 1995. genres is "
        "Animation. Response:"]


def test_config_defaults_and_the_loss_temperature_rule():
    t, s = TallRecConfig(), LLMCTRConfig()
    assert (t.template, t.loss, t.history_items, t.lora_targets, t.lora_dropout) == (
        "alpaca", "lm_response", 10, ("q_proj", "v_proj"), 0.05)
    assert (s.template, s.loss, s.normalize_embeddings) == ("sllm4ctr", "yes_no_bce", False)
    assert tallrec().train_defaults == {"lr": 1e-4, "weight_decay": 0.0, "batch_size": 32, "epochs": 1,
                                        "patience": 1, "schedule": "linear", "warmup": 20}
    assert "warmup" not in sllm4ctr().train_defaults and sllm4ctr().train_defaults["weight_decay"] == 1e-2
    with pytest.raises(ValueError, match=r"adaptive_temperature .* needs loss 'yes_no_bce'"):
        LLMCTRConfig(loss="lm_response")
    with pytest.raises(ValueError, match=r"loss must be one of"):
        TallRecConfig(loss="mse")


# -- the LM loss -----------------------------------------------------------------------------------------


def _hf_lm_loss(lm, ids, mask, resp, scope):
    """The reference: the HF model's full-vocabulary logits on prompt + response, a label mask built by hand (the
    response tokens only, or every real token with a real predecessor), mean cross-entropy over it."""
    full = torch.cat([ids, resp], 1)
    full_mask = torch.cat([mask, torch.ones_like(resp)], 1)
    positions = (full_mask.cumsum(-1) - 1).clamp(min=0)
    logits = lm.model(input_ids=full, attention_mask=full_mask, position_ids=positions).logits
    labels = torch.full_like(full, -100)
    if scope == "response":
        labels[:, ids.shape[1]:] = resp
    else:
        real = full_mask.bool()
        keep = real.clone()
        keep[:, 1:] &= real[:, :-1]
        keep[:, 0] = False
        labels[keep] = full[keep]
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                             ignore_index=-100)


@pytest.mark.parametrize("scope", ["response", "full"])
def test_lm_loss_equals_hf_logits_with_a_hand_built_label_mask(scope):
    lm = random_llama(seed=8)
    texts = ["user 3 liked movie 7 and movie 9 ? Answer Yes or No . Answer :", "movie 2 ? Answer :"]
    ids, mask = lm.tokenize(texts)
    assert mask[1, 0] == 0  # the batch is left-padded
    resp = lm.response_ids(torch.tensor([1.0, 0.0]))
    assert resp.tolist() == [[lm.yes_id, lm.tokenizer.eos_token_id], [lm.no_id, lm.tokenizer.eos_token_id]]
    with torch.no_grad():
        loss, out = lm.lm_loss(ids, mask, resp, scope)
        expected = _hf_lm_loss(lm, ids, mask, resp, scope)
        torch.testing.assert_close(out.logits, lm(ids, mask).logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)
    other = "full" if scope == "response" else "response"
    with torch.no_grad():
        assert abs(loss.item() - _hf_lm_loss(lm, ids, mask, resp, other).item()) > 1e-3  # the masks differ


def test_the_response_loss_trains_the_answer_token():
    """Gradient steps on the response loss raise p_yes for a Yes row and lower it for a No row."""
    lm = random_llama(seed=9)
    lm.add_lora(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj"))
    ids, mask = lm.tokenize(["user 1 like movie 2 ? Answer :", "user 5 like movie 6 ? Answer :"])
    y = torch.tensor([1.0, 0.0])
    with torch.no_grad():
        before = lm(ids, mask).margin
    opt = torch.optim.AdamW(lm.trainable_parameters(), lr=1e-2)
    cfg = TallRecConfig()
    for _ in range(10):
        opt.zero_grad()
        batch_loss(cfg, lm, ids, mask, y).backward()
        opt.step()
    with torch.no_grad():
        after = lm(ids, mask).margin
    assert after[0] > before[0] and after[1] < before[1]


# -- evaluation batches ----------------------------------------------------------------------------------


def test_sllm4ctr_test_predictions_do_not_depend_on_the_order_of_the_rows(tiny_data, tmp_path, monkeypatch):
    from dataclasses import replace

    # ids as numbers, which the tiny model's word-level tokenizer knows: prompts that differ in tokens
    data = replace(tiny_data, vocab={k: [str(i) for i in range(len(v))] for k, v in tiny_data.vocab.items()})
    method = sllm4ctr(**SMALL, eval_batch_size=4)
    ctx = _ctx(data, tmp_path, "sllm4ctr", batch_size=8)
    lm, _ = method._model(ctx)
    prompts = PromptBuilder(data, SMALL["template"])
    rows = np.asarray(data.splits["test"][:14])
    perm = np.random.default_rng(1).permutation(len(rows))
    p, plain = method._score(ctx, lm, prompts, rows)
    p_perm, plain_perm = method._score(ctx, lm, prompts, rows[perm])
    assert np.array_equal(p_perm, p[perm]) and np.array_equal(plain_perm, plain[perm])
    assert not np.allclose(p, plain)  # the temperature acts, so the batch composition matters
    assert [b.tolist() for b in evaluation_batches(np.array([30, 10, 20, 40, 50]), 2)] == [[1, 2], [0, 3], [4]]
    # the check can fail: batches cut in the order given give other predictions for the permuted rows
    monkeypatch.setattr(method_module, "evaluation_batches",
                        lambda r, size: [np.arange(s, min(s + size, len(r))) for s in range(0, len(r), size)])
    naive, _ = method._score(ctx, lm, prompts, rows[perm])
    assert not np.allclose(naive, p[perm])


# -- the methods, end to end ------------------------------------------------------------------------


def _ctx(data, tmp_path, method: str, plm_config: dict | None = None, plm: str = "random-llama", **train):
    plugins = load_plugins()
    spec = RunSpec("t", ComponentRef("tiny"), ComponentRef(method), None, ComponentRef(plm, plm_config or {}), train,
                   0)
    trainer = Trainer(TrainConfig(**train), torch.device("cpu"), seed=0)
    return RunContext(spec, data, plugins, trainer, torch.device("cpu"), trainer.reporter, tmp_path)


SMALL = {"max_length": 32, "template": "user {user_id} item {item_id} "
         "category {cat} ? Answer Yes or No . Answer :"}


@pytest.mark.parametrize("loss", ["yes_no_bce", "lm_response"])
def test_sllm4ctr_without_temperature_and_beta_zero_is_tallrec_bit_for_bit(tiny_data, tmp_path, loss):
    """Same prompt, loss and LoRA: the switches off, sllm4ctr is tallrec exactly (for TallRec's own LM loss and
    for SLLM4CTR's two-way loss); the switches on, or the other loss, change the predictions."""
    train = {"max_samples": 24, "eval_max_samples": 16, "batch_size": 8, "lr": 1e-3, "epochs": 1}
    same_lora = {"lora_targets": ["q_proj", "v_proj"], "lora_dropout": 0.05}
    base = tallrec(**SMALL, **same_lora, loss=loss).run(_ctx(tiny_data, tmp_path, "tallrec", **train))
    off = sllm4ctr(**SMALL, **same_lora, loss=loss, adaptive_temperature=False, beta=0.0).run(
        _ctx(tiny_data, tmp_path, "sllm4ctr", **train))
    scored = np.isfinite(base.test)
    assert scored.sum() == 16 and np.isfinite(base.valid).sum() == 16
    assert np.array_equal(base.test[scored], off.test[scored])
    assert np.array_equal(base.valid[np.isfinite(base.valid)], off.valid[np.isfinite(off.valid)])
    assert base.extra["train_steps"] == 3 and base.extra["trainable_params"] > 0
    assert "test_auc_no_temperature" not in base.extra
    if loss == "yes_no_bce":
        full = sllm4ctr(**SMALL, **same_lora).run(_ctx(tiny_data, tmp_path, "sllm4ctr", **train))
        assert not np.allclose(base.test[scored], full.test[scored])  # the switches do change the model
        assert set(full.extra) >= {"test_auc_no_temperature", "valid_auc_no_temperature",
                                   "test_logloss_no_temperature"}
        assert np.isfinite(full.extra["test_auc_no_temperature"])
    else:
        other = tallrec(**SMALL, **same_lora, loss="yes_no_bce").run(_ctx(tiny_data, tmp_path, "tallrec", **train))
        assert not np.allclose(base.test[scored], other.test[scored])  # the objective changes the model


def test_validation_predictions_of_the_best_epoch_are_reused_not_rescored(tiny_data, tmp_path, monkeypatch):
    """The monitor's predictions at the best epoch are what scoring the restored model gives, bit for bit, so
    `_train` hands them back instead of scoring the validation split again. The monitor is made to prefer epoch 1
    of 3, so handing back the last epoch's predictions (or the wrong element) would fail."""
    from ctrbench.engine import monitor as monitor_module

    falling = iter([0.9, 0.8, 0.7])
    monkeypatch.setattr(monitor_module, "auc_score", lambda y, p: next(falling))
    method = sllm4ctr(**SMALL)
    ctx = _ctx(tiny_data, tmp_path, "sllm4ctr", max_samples=16, eval_max_samples=12, batch_size=8, lr=5e-2,
               epochs=3, patience=5)
    lm, _ = method._model(ctx)
    prompts = PromptBuilder(tiny_data, SMALL["template"])
    scored = []
    predict = method._predict
    monkeypatch.setattr(method, "_predict", lambda *a: scored.append(predict(*a)) or scored[-1])
    report, (valid, plain) = method._train(ctx, lm, prompts)
    assert (report.best_epoch, report.epochs_run, len(scored)) == (1, 3, 3)  # one validation per epoch, no more
    again, again_plain = predict(ctx, lm, prompts, "valid")
    np.testing.assert_array_equal(valid, again)
    np.testing.assert_array_equal(plain, again_plain)
    assert np.isfinite(valid).sum() == 12
    assert not np.allclose(scored[2][0][np.isfinite(valid)], valid[np.isfinite(valid)])  # epoch 3 differs


@pytest.mark.parametrize("plm", ["random-llama", "random-t5"])
def test_tallrec_as_published_runs_on_either_family(tiny_data, tmp_path, plm):
    """TallRec's defaults end to end: the Alpaca prompt of the last 10 interactions (here of the tiny data, whose
    ids the word-level tokenizer does not know: the run, not the model, is under test) and the response loss,
    through the causal LM and through T5's decoder; p_yes comes out for the scored rows only."""
    train = {"max_samples": 16, "eval_max_samples": 12, "batch_size": 8, "lr": 1e-3, "epochs": 1}
    preds = tallrec(max_length=64).run(_ctx(tiny_data, tmp_path, "tallrec", plm=plm, **train))
    scored = np.isfinite(preds.test)
    assert scored.sum() == 12 and ((preds.test[scored] > 0) & (preds.test[scored] < 1)).all()
    assert preds.extra["train_steps"] == 2


def test_tallrec_lm_full_needs_a_causal_lm(tiny_data, tmp_path):
    ctx = _ctx(tiny_data, tmp_path, "tallrec", max_samples=8)
    ctx.spec = RunSpec("t", ComponentRef("tiny"), ComponentRef("tallrec"), None, ComponentRef("random-t5"), {}, 0)
    with pytest.raises(PluginError, match=r"loss 'lm_full' .* needs a causal LM; 'random-t5' is a seq2seq_lm"):
        tallrec(**SMALL, loss="lm_full").run(ctx)


def test_losses_match_the_switches():
    from ctrbench_plm.causal_lm import YesNoOutput
    from ctrbench_sllm4ctr.config import LLMCTRConfig

    torch.manual_seed(0)
    out = YesNoOutput(torch.randn(6, 2), torch.randn(6, 8), torch.randn(6, 8))
    y = torch.tensor([1.0, 0, 1, 0, 0, 1])
    plain, _ = yes_no_loss(LLMCTRConfig(adaptive_temperature=False, label_matching=False), out, y)
    assert plain.item() == pytest.approx(torch.nn.functional.cross_entropy(out.logits, y.long()).item(), rel=1e-6)
    t = adaptive_temperature(out.prompt, out.click)
    temp, p = yes_no_loss(LLMCTRConfig(label_matching=False), out, y)
    torch.testing.assert_close(p, torch.softmax(out.logits * t.unsqueeze(1), 1)[:, 1])
    full, _ = yes_no_loss(LLMCTRConfig(beta=0.5, volume_alpha=1.0), out, y)
    assert full.item() == pytest.approx(temp.item() + 0.5 * label_matching_loss(out.click, p, 1.0).item(), rel=1e-5)


def test_a_masked_lm_is_refused_with_a_clear_error(tiny_data, tmp_path):
    ctx = _ctx(tiny_data, tmp_path, "tallrec", max_samples=8)
    ctx.spec = RunSpec("t", ComponentRef("tiny"), ComponentRef("tallrec"), None, ComponentRef("random-bert"), {}, 0)
    with pytest.raises(PluginError, match=r"needs a causal LM .* or a seq2seq LM .*'random-bert' is a masked_lm"):
        tallrec(**SMALL).run(ctx)


SUITE = """\
schema_version: 1
name: llm-tiny
datasets: [{name: synthetic, num_samples: 1500, num_fields: 3, vocab_size: 12}]
seeds: [1]
defaults:
  method: {name: sllm4ctr, max_length: 40}
  plm: random-llama
  train: {max_samples: 16, eval_max_samples: 40, batch_size: 8, lr: 0.001}
variants:
  SLLM4CTR: {}
  TallRec: {method.name: tallrec}
  DNN: {method: {name: ctr}, ctr: {name: dnn, embed_dim: 4, hidden_units: [8]}, plm: null,
        train: {epochs: 1, batch_size: 256, max_samples: 16, eval_max_samples: 40}}
baseline: {variant: DNN}
"""


@pytest.mark.slow
def test_suite_of_llm_and_id_runs_scored_on_the_same_rows(tmp_path, monkeypatch):
    from ctrbench.store import Store

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(textwrap.dedent(SUITE))
    assert cli.main(["run", "s.yaml", "--threads", "1", "--leaderboards", "boards"]) == 0
    runs = {r.spec.labels["variant"]: r for r in Store(tmp_path / "runs").runs("llm-tiny")}
    assert set(runs) == {"SLLM4CTR", "TallRec", "DNN"}
    for r in runs.values():
        assert r.result.ok, r.result.error
        assert r.result.metrics["test_rows_scored"] == 40
        preds = r.predictions()
        assert len(preds["test_p"]) == 40 and np.isfinite(preds["test_p"]).all()
    assert np.array_equal(runs["DNN"].predictions()["test_rows"], runs["TallRec"].predictions()["test_rows"])
    board = (tmp_path / "boards" / "llm-tiny.md").read_text()
    assert "fixed random subset of 40 test rows" in board


def test_gguf_is_converted_once_into_a_float_checkpoint(tmp_path, monkeypatch):
    """The conversion path with transformers' GGUF loader stubbed by a random llama (the real 98 MB file is read
    by the shipped suites): quantiser marks dropped, saved atomically, then reused without reading the GGUF."""
    import transformers

    from ctrbench_plm import sources
    from ctrbench_plm.causal_lm import COMPLETE_MARKER, gguf_to_float_checkpoint

    lm = random_llama(seed=6)
    calls = []

    def fake_model(folder, gguf_file=None, **kw):
        calls.append(gguf_file)
        lm.model.hf_quantizer = object()  # what the GGUF loader leaves behind; save_pretrained refuses it
        return lm.model

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", staticmethod(fake_model))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", staticmethod(lambda *a, **k: lm.tokenizer))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(sources.SMOLLM2_GGUF, "fetch", lambda cache_dir: gguf)
    dest = sources.smollm2_float_dir(tmp_path / "cache")
    assert calls == ["m.gguf"] and (dest / COMPLETE_MARKER).exists() and (dest / "config.json").exists()
    assert sources.smollm2_float_dir(tmp_path / "cache") == dest and calls == ["m.gguf"]  # reused, not reconverted
    assert gguf_to_float_checkpoint(gguf, dest, "x") == dest and calls == ["m.gguf"]
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no temporary folder left behind


def test_gradient_checkpointing_gives_the_same_lora_gradients():
    """The GPU memory saver (on by default for CUDA runs) must not change what is learned; checked on the CPU."""
    grads = []
    for checkpointing in (False, True):
        lm = random_llama(seed=7)
        lm.add_lora(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj"))
        if checkpointing:
            lm.enable_gradient_checkpointing()
        lm.train()
        out = lm(*lm.tokenize(["user 1 like movie 2 ? Answer :", "user 3 ? Answer :"]))
        torch.nn.functional.binary_cross_entropy_with_logits(out.margin, torch.tensor([1.0, 0.0])).backward()
        grads.append({n: p.grad.clone() for n, p in lm.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == 8
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, atol=1e-6, rtol=1e-5)


def test_eq4_barely_depends_on_the_embeddings_when_the_batch_is_small():
    """|B| <= d and embeddings of ordinary norm: the log det(E E^T) parts of Eq. 4 cancel (weights tr(Pi_0)/2|B| +
    tr(Pi_1)/2|B| - 1/2 = 0), and so do the log(alpha) parts: alpha changes nothing and E gets almost no
    gradient — what the sensitivity board shows. With |B| > d (no cancellation) the gradient is of ordinary
    size: the check can fail."""
    torch.manual_seed(0)
    p = torch.rand(8)

    def grad_norm(e: torch.Tensor, alpha: float, probs: torch.Tensor) -> tuple[float, float]:
        e = e.clone().requires_grad_(True)
        loss = label_matching_loss(e, probs, alpha)
        loss.backward()
        return loss.item(), e.grad.norm().item()

    small_batch = torch.randn(8, 576) * 3
    losses = {}
    for alpha in (1.0, 0.1, 0.01):
        losses[alpha], g = grad_norm(small_batch, alpha, p)
        assert g < 1e-5
    assert max(losses.values()) - min(losses.values()) < 1e-3
    _, g_wide = grad_norm(torch.randn(64, 16) * 3, 1.0, torch.rand(64))
    assert g_wide > 1e-2
