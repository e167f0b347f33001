"""The ``Seq2SeqLM`` family (T5): Yes/No scores at the first decoder step against transformers' own forward, padding
invariance, LoRA through peft, and loading from local folders. Every model is a tiny random T5 built here."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ctrbench.errors import DataError, PluginError
from ctrbench.plugins import load_plugins
from ctrbench_plm import plugin as plm_plugin
from ctrbench_plm.causal_lm import random_llama
from ctrbench_plm.seq2seq_lm import Seq2SeqLM, load_seq2seq_lm, random_t5
from ctrbench_plm.yes_no import YesNoOutput, random_word_tokenizer

PROMPTS = ["user 3 liked movie 7 , movie 12 . will the user like movie 9 ? Answer Yes or No . Answer :",
           "Answer :",
           "user 5 age 30 gender F ? Answer :"]


def _hf_scores(lm: Seq2SeqLM, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The reference: ``T5ForConditionalGeneration``'s own forward with the decoder start token as the only decoder
    input; its full-vocabulary logits at step 0 picked at (No, Yes), the decoder's last hidden state at step 0 and
    the masked mean of the encoder's last hidden state."""
    model = lm.base_model()
    start = torch.full((ids.shape[0], 1), model.config.decoder_start_token_id, dtype=torch.long)
    out = model(input_ids=ids, attention_mask=mask, decoder_input_ids=start, output_hidden_states=True)
    m = mask.unsqueeze(-1).float()
    prompt = (out.encoder_last_hidden_state * m).sum(1) / m.sum(1)
    return out.logits[:, 0, [lm.no_id, lm.yes_id]], out.decoder_hidden_states[-1][:, 0], prompt


# ------------------------------------------------------------------------------------------------ shapes
def test_output_shapes_and_right_padding() -> None:
    lm = random_t5(seed=0, d_model=24, d_kv=8, num_heads=2)
    assert lm.family == "seq2seq_lm" and lm.hidden_size == 24
    ids, mask = lm.tokenize(PROMPTS, max_length=64)
    assert ids.dtype == torch.long and ids.shape == mask.shape and ids.shape[0] == 3
    assert mask[1, 0] == 1 and mask[1, -1] == 0  # right padded
    eos = lm.tokenizer.eos_token_id
    assert all(ids[i, int(mask[i].sum()) - 1] == eos for i in range(3))  # T5-style closing </s>
    with torch.no_grad():
        out = lm(ids, mask)
    assert isinstance(out, YesNoOutput)
    assert out.logits.shape == (3, 2) and out.logits.dtype == torch.float32
    assert out.click.shape == (3, 24) and out.prompt.shape == (3, 24)
    assert out.margin.shape == (3,)
    assert lm.tokenizer.convert_ids_to_tokens([lm.yes_id, lm.no_id]) == ["Yes", "No"]


def test_left_truncation_keeps_the_question_and_the_closing_token() -> None:
    lm = random_t5(seed=0)
    ids, mask = lm.tokenize([PROMPTS[0]], max_length=6)
    assert ids.shape == (1, 6) and mask.all()
    assert lm.tokenizer.convert_ids_to_tokens(ids[0]) == ["or", "No", ".", "Answer", ":", "</s>"]


# ------------------------------------------------------------------------------------ against transformers
@pytest.mark.parametrize("tie", [False, True], ids=["flan-t5-like", "t5-scaled"])
def test_scores_equal_transformers_first_decoder_step(tie: bool) -> None:
    """(l_no, l_yes) from two rows of the head equal T5's full LM head at decoder step 0 — with and without T5's
    ``d_model ** -0.5`` output scaling — and click / prompt are the hidden states they claim to be."""
    lm = random_t5(seed=1, d_model=32, d_kv=8, num_heads=4, tie_word_embeddings=tie)
    assert (lm.output_scale == 1.0) is (not tie)
    ids, mask = lm.tokenize(PROMPTS)
    assert (mask == 0).any()
    with torch.no_grad():
        out = lm(ids, mask)
        want_logits, want_click, want_prompt = _hf_scores(lm, ids, mask)
    torch.testing.assert_close(out.logits, want_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.click, want_click, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.prompt, want_prompt, atol=1e-5, rtol=1e-5)
    assert (out.logits[:, 0] - out.logits[:, 1]).abs().max() > 1e-3  # not trivially equal scores


@pytest.mark.parametrize("tie", [False, True], ids=["flan-t5-like", "t5-scaled"])
def test_response_loss_equals_transformers_labels_loss(tie: bool) -> None:
    """TALLRec's objective on T5: the decoder's cross-entropy on (answer, </s>) equals
    ``T5ForConditionalGeneration(labels=...)``'s loss (teacher forcing from the start token); the output at the
    first decoder step is ``forward``'s; the whole-sequence loss does not exist for an encoder-decoder."""
    lm = random_t5(seed=3, tie_word_embeddings=tie)
    lm.eval()
    ids, mask = lm.tokenize(PROMPTS)
    resp = lm.response_ids(torch.tensor([1.0, 0.0, 1.0]))
    assert resp.tolist() == [[lm.yes_id, lm.tokenizer.eos_token_id], [lm.no_id, lm.tokenizer.eos_token_id],
                             [lm.yes_id, lm.tokenizer.eos_token_id]]
    with torch.no_grad():
        loss, out = lm.lm_loss(ids, mask, resp)
        want = lm.base_model()(input_ids=ids, attention_mask=mask, labels=resp).loss
        torch.testing.assert_close(out.logits, lm(ids, mask).logits, atol=1e-5, rtol=1e-5)
        flipped = lm.response_ids(torch.tensor([0.0, 1.0, 0.0]))
        wrong = lm.base_model()(input_ids=ids, attention_mask=mask, labels=flipped).loss
    torch.testing.assert_close(loss, want, atol=1e-5, rtol=1e-5)
    assert abs(loss.item() - wrong.item()) > 1e-4  # the labels matter
    with pytest.raises(PluginError, match=r"no loss on the whole sequence"):
        lm.lm_loss(ids, mask, resp, scope="full")


def test_a_prompt_alone_scores_as_in_a_padded_batch() -> None:
    lm = random_t5(seed=2)
    ids, mask = lm.tokenize(PROMPTS)
    with torch.no_grad():
        batch = lm(ids, mask)
        for i, text in enumerate(PROMPTS):
            one_ids, one_mask = lm.tokenize([text])
            assert one_mask.all()
            one = lm(one_ids, one_mask)
            torch.testing.assert_close(batch.logits[i], one.logits[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(batch.click[i], one.click[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(batch.prompt[i], one.prompt[0], atol=1e-5, rtol=1e-5)


def test_answers_must_be_single_tokens_and_the_model_a_t5() -> None:
    t5 = random_t5(seed=0)
    with pytest.raises(PluginError, match=r"'maybe not' is 2 tokens"):
        Seq2SeqLM(t5.model, random_word_tokenizer(["maybe", "not"]), name="t", answer_tokens=("maybe not", "No"))
    llama = random_llama(seed=0)
    with pytest.raises(PluginError, match=r"PLM 'x': Seq2SeqLM takes T5 .* got model_type 'llama'"):
        Seq2SeqLM(llama.model, llama.tokenizer, name="x")


# ------------------------------------------------------------------------------------------------ LoRA
def _lora_hand_count(cfg, r: int) -> int:
    """q and v (d_model -> heads * d_kv) in every attention: the encoder's self-attention, the decoder's self- and
    cross-attention. Each adapter is A [r, in] + B [out, r]."""
    attentions = cfg.num_layers + 2 * cfg.num_decoder_layers
    return attentions * 2 * r * (cfg.d_model + cfg.num_heads * cfg.d_kv)


def test_lora_freezes_the_base_and_counts_its_adapters() -> None:
    lm = random_t5(seed=3, d_model=32, d_kv=8, num_heads=2)  # heads * d_kv = 16 != d_model: A and B differ
    cfg = lm.base_model().config
    ids, mask = lm.tokenize(PROMPTS)
    with torch.no_grad():
        before = lm(ids, mask).logits
    n = lm.add_lora(r=4, alpha=8, dropout=0.0, seed=0)  # default targets: q, v
    assert type(lm.model).__name__ == "PeftModelForSeq2SeqLM"
    assert lm.lora_config["target_modules"] == ["q", "v"]
    assert n == _lora_hand_count(cfg, 4) == 6 * 2 * 4 * (32 + 16)
    trainable = {name for name, p in lm.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    assert sum(p.numel() for p in lm.trainable_parameters()) == n
    with torch.no_grad():  # LoRA's B starts at zero: the wrapped model scores as before
        torch.testing.assert_close(lm(ids, mask).logits, before)
    with pytest.raises(PluginError, match="already applied"):
        lm.add_lora()


def test_lora_steps_lower_the_bce_and_touch_only_adapters() -> None:
    lm = random_t5(seed=4)
    lm.add_lora(r=4, alpha=8, dropout=0.0, target_modules=("q", "k", "v", "o"), seed=0)
    ids, mask = lm.tokenize(PROMPTS + ["movie 9 ? Answer :"])
    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    state = {k: v.clone() for k, v in lm.state_dict().items()}

    def bce() -> float:
        lm.eval()
        with torch.no_grad():
            return F.binary_cross_entropy_with_logits(lm(ids, mask).margin, y).item()

    start = bce()
    opt = torch.optim.AdamW(lm.trainable_parameters(), lr=1e-2)
    for _ in range(5):
        lm.train()
        loss = F.binary_cross_entropy_with_logits(lm(ids, mask).margin, y)
        opt.zero_grad()
        loss.backward()
        with_grad = {name for name, p in lm.named_parameters() if p.grad is not None}
        assert with_grad and all("lora_" in name for name in with_grad)
        opt.step()
    assert bce() < start - 0.05
    changed = {k for k, v in lm.state_dict().items() if not torch.equal(v, state[k])}
    assert changed and all("lora_" in k for k in changed)


def test_lora_targets_are_checked_against_t5_names() -> None:
    with pytest.raises(PluginError, match=r"\['q_proj'\] not in the model .*defaults to \['q', 'v'\]"):
        random_t5().add_lora(target_modules=("q_proj", "v"))


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    """The path the methods take on a GPU (peft + checkpointing + input grads) changes memory, not the gradients."""
    grads = []
    for checkpointing in (False, True):
        lm = random_t5(seed=5, dropout_rate=0.0)  # train mode without randomness: the two runs are comparable
        lm.add_lora(r=2, alpha=4, dropout=0.0, seed=0)
        if checkpointing:
            lm.enable_gradient_checkpointing()
        lm.train()
        ids, mask = lm.tokenize(PROMPTS)
        lm(ids, mask).margin.sum().backward()
        grads.append({n: p.grad.clone() for n, p in lm.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------------------ loading
@pytest.fixture
def saved_t5(tmp_path: Path) -> tuple[Seq2SeqLM, Path]:
    lm = random_t5(seed=6, tie_word_embeddings=True)
    folder = tmp_path / "t5"
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return lm, folder


@pytest.mark.parametrize("name", ["random-t5", "flan-t5-small", "flan-t5-base"])
def test_registered_names_load_a_local_folder(saved_t5, name: str) -> None:
    lm, folder = saved_t5
    loaded = load_plugins().registry("plm").get(name).create(path=str(folder))
    assert isinstance(loaded, Seq2SeqLM) and loaded.name == name and loaded.family == "seq2seq_lm"
    assert loaded.output_scale == lm.output_scale != 1.0
    ids, mask = lm.tokenize(PROMPTS)
    ids2, mask2 = loaded.tokenize(PROMPTS)
    torch.testing.assert_close(ids2, ids)
    torch.testing.assert_close(mask2, mask)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids2, mask2).logits, lm(ids, mask).logits)


def test_missing_local_folder_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"PLM 'flan-t5-small': local model folder .*nope does not exist"):
        plm_plugin.flan_t5_small(path=str(tmp_path / "nope"))
    with pytest.raises(DataError, match=r"local model folder"):
        load_seq2seq_lm(tmp_path / "nope", name="local", local=True)


def test_hub_name_offline_is_a_one_line_error_naming_the_plm(tmp_path: Path, monkeypatch) -> None:
    """No network and an empty hub cache (what a user without internet has): one line, the PLM's name, the fix."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    with pytest.raises(DataError) as info:
        load_plugins().registry("plm").get("flan-t5-small").create()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("PLM 'flan-t5-small': could not load google/flan-t5-small")
    assert message.endswith("pass path= a local folder laid out like the hub's")


# ------------------------------------------------------------------------------------------------ registry
def test_registry_entries_carry_the_family() -> None:
    registry = load_plugins().registry("plm")
    family = {n for n in registry if registry.get(n).metadata["family"] == "seq2seq_lm"}
    assert family == {"random-t5", "flan-t5-small", "flan-t5-base", "flan-t5-large"}
    for name in family:
        entry = registry.get(name)
        assert entry.plugin == "builtin-plm" and entry.summary
        assert "path" in inspect.signature(entry.factory).parameters
    made = registry.get("random-t5").create(seed=3)
    assert isinstance(made, Seq2SeqLM)
    torch.testing.assert_close(made.model.shared.weight, random_t5(seed=3).model.shared.weight)
