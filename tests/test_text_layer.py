"""The core text layer (`ctrbench.text`): texts from dataset metadata, the token table and its cache key, MLM
corruption, and the contrastive losses against naive per-example loops."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ctrbench.data.types import CTRData, Field, TextSpec
from ctrbench.errors import DataError
from ctrbench.text import (
    IGNORE,
    NO_HISTORY,
    RowTemplate,
    TokenTable,
    clear_cache,
    generic_prompt,
    history_names,
    id_dtype,
    info_nce,
    item_names,
    item_side_fields,
    item_texts,
    mask_tokens,
    maskable,
    prompt_template,
    render_rows,
    row_texts,
    simcse_loss,
    token_cache_key,
    tokenizer_identity,
    user_side_fields,
    user_texts,
)

# -- a small dataset: 3 users with profiles, 3 items with titles, a liked-items history --------------------------

USERS = {1: ("25", "M"), 2: ("40", "F"), 3: ("33", "F")}  # user index -> (age, gender)
ITEMS = {1: ("Toy Story", "Animation"), 2: ("Heat", "Action Crime"), 3: ("Up", "Animation")}  # -> (title, genres)
ROWS = [(1, 1), (2, 2), (1, 2), (3, 3), (1, 3), (2, 1)]  # (user, item) in time order


def _data(fingerprint: str = "fp-text-1", text: TextSpec | None = None, history: bool = True) -> CTRData:
    fields = [Field("user_id", "categorical", 4, "user id"), Field("item_id", "categorical", 4, "item id"),
              Field("age", "categorical", 4), Field("gender", "categorical", 3),
              Field("title", "categorical", 4), Field("genres", "categorical", 3)]
    ages, genders = ["unknown", "25", "40", "33"], ["unknown", "M", "F"]
    titles, genres = ["unknown", "Toy Story", "Heat", "Up"], ["unknown", "Animation", "Action Crime"]
    X = np.array([[u, i, ages.index(USERS[u][0]), genders.index(USERS[u][1]), titles.index(ITEMS[i][0]),
                   genres.index(ITEMS[i][1])] for u, i in ROWS], dtype=np.int64)
    n = len(X)
    seqs, seq_fields = {}, []
    if history:  # every earlier row of the same user counts as liked here; most recent first, zero-padded
        hist = np.zeros((n, 3), dtype=np.int64)
        for r, (u, _) in enumerate(ROWS):
            earlier = [i for (v, i) in ROWS[:r] if v == u][::-1][:3]
            hist[r, :len(earlier)] = earlier
        seqs = {"history": hist}
        seq_fields = [Field("history", "sequence", 4, "recently liked movies", shares="item_id")]
    return CTRData("text-test", fields, X, np.zeros(n, np.float32), np.arange(n), X[:, 0].copy(), X[:, 1].copy(),
                   {"train": np.arange(4), "valid": np.arange(4, 5), "test": np.arange(5, 6)},
                   {"user_id": ["unknown", "u1", "u2", "u3"], "item_id": ["unknown", "m1", "m2", "m3"], "age": ages,
                    "gender": genders, "title": titles, "genres": genres},
                   sequences=seqs, sequence_fields=seq_fields, fingerprint=fingerprint, text=text or TextSpec())


@pytest.fixture(autouse=True)
def _fresh_text_cache():
    clear_cache()
    yield
    clear_cache()


# -- templates ---------------------------------------------------------------------------------------------------

def test_default_row_texts_are_label_is_value_phrases():
    data = _data()
    assert row_texts(data, [0, 3]) == [
        "user id is u1. item id is m1. age is 25. gender is M. title is Toy Story. genres is Animation.",
        "user id is u3. item id is m3. age is 33. gender is F. title is Up. genres is Animation."]
    assert row_texts(data, [1], fields=["title", "age"]) == ["title is Heat. age is 40."]
    assert row_texts(data, [0, 3]) == render_rows(data, [0, 3])
    assert row_texts(data, []) == []


def test_side_fields_are_detected_from_the_data():
    data = _data()
    assert item_side_fields(data) == ["title", "genres"]
    assert user_side_fields(data) == ["age", "gender"]


def test_dataset_labels_override_field_text_names_and_are_not_mixed_up_in_the_cache():
    plain = _data()
    labelled = _data(text=TextSpec(labels={"user_id": "user", "genres": "genre"}))  # same fingerprint
    assert row_texts(plain, [0], fields=["user_id", "genres"]) == ["user id is u1. genres is Animation."]
    assert row_texts(labelled, [0], fields=["user_id", "genres"]) == ["user is u1. genre is Animation."]
    assert item_texts(labelled)[1] == "title is Toy Story. genre is Animation."
    assert item_texts(plain)[1] == "title is Toy Story. genres is Animation."


def test_item_texts_default_and_dataset_template():
    data = _data()
    assert item_texts(data) == ["", "title is Toy Story. genres is Animation.",
                                "title is Heat. genres is Action Crime.", "title is Up. genres is Animation."]
    shipped = _data(text=TextSpec(item='Movie {item_id} is "{title}" ({genres}).'))
    assert item_texts(shipped) == ["", 'Movie m1 is "Toy Story" (Animation).', 'Movie m2 is "Heat" (Action Crime).',
                                   'Movie m3 is "Up" (Animation).']
    assert item_texts(shipped, ["title"]) == ["", "title is Toy Story.", "title is Heat.", "title is Up."]
    assert item_texts(data, template="{title}!") == ["", "Toy Story!", "Heat!", "Up!"]
    with pytest.raises(DataError, match=r"item template: dataset 'text-test': \['age'\] not constant per item"):
        item_texts(data, template="{title} for {age}")


PLOTS = ["", "Toys come alive", "A heist in LA", "unknown"]  # per item index; item 3 has none


def test_item_text_columns_render_by_name_and_stay_out_of_the_fields():
    data = replace(_data(), item_text={"plot": PLOTS})
    assert item_side_fields(data) == ["title", "genres"]  # not a field: no ID model embeds it
    assert item_texts(data)[1:] == ["title is Toy Story. genres is Animation. plot is Toys come alive.",
                                    "title is Heat. genres is Action Crime. plot is A heist in LA.",
                                    "title is Up. genres is Animation. plot is unknown."]
    assert item_texts(data, template="{title}: {plot}")[2] == "Heat: A heist in LA"
    # Per row through the row's item, in explicit fields and in row templates, with the dataset's label.
    rows = [5, 1, 3]  # items 1, 2, 3
    assert row_texts(data, rows, fields=["title", "plot"]) == [
        "title is Toy Story. plot is Toys come alive.", "title is Heat. plot is A heist in LA.",
        "title is Up. plot is unknown."]
    assert row_texts(data, rows, template="{user_id} / {plot}") == ["u2 / Toys come alive", "u2 / A heist in LA",
                                                                   "u3 / unknown"]
    labelled = replace(data, fingerprint="fp-text-2", text=TextSpec(labels={"plot": "synopsis"}))
    assert row_texts(labelled, [5], fields=["plot"]) == ["synopsis is Toys come alive."]
    assert row_texts(data, [0]) == row_texts(_data(), [0])  # default rows: the fields only
    with pytest.raises(DataError, match=r"no field\(s\) \['blurb'\].*item texts: plot"):
        row_texts(data, [0], template="{blurb}")
    with pytest.raises(DataError, match=r"\['plot'\] not constant per user"):
        user_texts(data, template="{age} {plot}")


def test_item_text_must_have_one_entry_per_item_and_its_own_name():
    with pytest.raises(ValueError, match="item_text 'plot' has 2 entries, expected one per index of 'item_id' \\(4\\)"):
        replace(_data(), item_text={"plot": ["", "x"]})
    with pytest.raises(ValueError, match=r"item_text \['title'\] share a name with a field"):
        replace(_data(), item_text={"title": PLOTS})


def test_user_texts_per_user_and_per_row_with_history_before_the_row():
    data = _data()
    assert user_texts(data) == ["", "age is 25. gender is M.", "age is 40. gender is F.", "age is 33. gender is F."]
    # row 4 is user 1's third row: earlier liked m2 (Heat, row 2) then m1 (Toy Story, row 0), most recent first
    assert user_texts(data, [4, 0], history_items=5) == [
        "age is 25. gender is M. recently liked movies is Heat, Toy Story.",
        f"age is 25. gender is M. recently liked movies is {NO_HISTORY}."]
    assert user_texts(data, [4], history_items=1) == ["age is 25. gender is M. recently liked movies is Heat."]
    assert user_texts(data, [4]) == ["age is 25. gender is M."]
    shipped = _data(text=TextSpec(user="A {age}-year-old {gender} who liked {history}."))
    assert user_texts(shipped, [4], history_items=2) == ["A 25-year-old M who liked Heat, Toy Story."]
    assert user_texts(shipped, fields=["gender"]) == ["", "gender is M.", "gender is F.", "gender is F."]
    with pytest.raises(ValueError, match="history is per row"):
        user_texts(data, history_items=3)
    with pytest.raises(ValueError, match="history is per row"):
        user_texts(shipped)
    with pytest.raises(ValueError, match="pass history_items > 0"):
        user_texts(shipped, [4])
    with pytest.raises(DataError, match="has no 'history' sequence"):
        user_texts(_data(history=False), [4], history_items=2)
    with pytest.raises(DataError, match=r"\['title'\] not constant per user"):
        user_texts(data, template="{title}")


def test_item_names_follow_the_dataset_name_field():
    data = _data()
    assert item_names(data) == ["unknown", "Toy Story", "Heat", "Up"]
    assert item_names(_data(text=TextSpec(item_name="genres"))) == ["unknown", "Animation", "Action Crime",
                                                                    "Animation"]
    assert history_names(data, [4, 5, 0], 2) == [["Heat", "Toy Story"], ["Heat"], []]
    with pytest.raises(DataError, match="text.item_name names field 'rating'"):
        item_names(_data(text=TextSpec(item_name="rating")))


def test_row_templates_render_fields_and_history():
    data = _data(text=TextSpec(row="{user_id} saw {history}; now {title}."))
    assert row_texts(data, [4, 0]) == ["u1 saw Heat, Toy Story; now Up.", f"u1 saw {NO_HISTORY}; now Toy Story."]
    assert row_texts(data, [4], history_items=1) == ["u1 saw Heat; now Up."]
    assert row_texts(data, [4], fields=["title"]) == ["title is Up."]  # explicit fields bypass the template
    assert RowTemplate(data, "{title}/{title}")([1]) == ["Heat/Heat"]
    with pytest.raises(DataError, match=r"row template: dataset 'text-test' has no field\(s\) \['rating'\]"):
        row_texts(data, [0], template="{rating}")
    with pytest.raises(ValueError, match="not both"):
        row_texts(data, [0], fields=["title"], template="{title}")
    with pytest.raises(DataError, match="row index out of range"):
        row_texts(data, [6])


def test_prompt_template_prefers_the_dataset_then_the_generic_one():
    data = _data()
    assert prompt_template(data) == generic_prompt(data)
    assert generic_prompt(data).startswith("user id is {user_id}. item id is {item_id}. age is {age}.")
    assert generic_prompt(data).endswith("The user recently liked: {history}. Will the user click this item? "
                                         "Answer Yes or No. Answer:")
    assert prompt_template(_data(text=TextSpec(prompt="{title}? Answer:"))) == "{title}? Answer:"
    assert prompt_template(data, "{age}") == "{age}"


# The MovieLens-100K prompt as it was written in ctrbench_sllm4ctr/prompts.py before it moved into the dataset's
# TextSpec: the strings must stay identical.
OLD_MOVIELENS = ("User {user_id} is a {age}-year-old {gender} {occupation} (zip code {zip_code}). "
                 "The user recently liked: {history}. Movie {item_id} is \"{title}\" ({release_year}; {genres}). "
                 "Will user {user_id} like movie {item_id}? Answer Yes or No. Answer:")


def test_movielens_ships_its_prompt_and_prompts_are_unchanged():
    from ctrbench_datasets import movielens
    from ctrbench_sllm4ctr.prompts import PromptBuilder

    inter = pd.DataFrame({"user_id": ["1", "1", "2", "1"], "item_id": ["10", "20", "10", "30"],
                          "rating": [5, 4, 5, 1], "timestamp": [1, 2, 3, 4]})
    users = pd.DataFrame({"user_id": ["1", "2"], "age": ["24", "53"], "gender": ["M", "F"],
                          "occupation": ["technician", "other"], "zip_code": ["85711", "94043"]})
    items = pd.DataFrame({"item_id": ["10", "20", "30"], "title": ["Toy Story", "GoldenEye", "Four Rooms"],
                          "release_year": ["1995", "1995", "1995"], "genres": ["Animation", "Action", "Thriller"]})
    data = movielens.preprocess(inter, users, items, drop_rating=3, positive_min_rating=4, split=(0.5, 0.25, 0.25),
                                history_length=3)
    assert data.text.prompt == OLD_MOVIELENS
    builder = PromptBuilder(data, history_items=5)
    assert builder.template == OLD_MOVIELENS
    assert builder(np.arange(4)) == [
        OLD_MOVIELENS.format(user_id="1", age="24", gender="M", occupation="technician", zip_code="85711",
                             history=NO_HISTORY, item_id="10", title="Toy Story", release_year="1995",
                             genres="Animation"),
        OLD_MOVIELENS.format(user_id="1", age="24", gender="M", occupation="technician", zip_code="85711",
                             history="Toy Story", item_id="20", title="GoldenEye", release_year="1995",
                             genres="Action"),
        OLD_MOVIELENS.format(user_id="2", age="53", gender="F", occupation="other", zip_code="94043",
                             history=NO_HISTORY, item_id="10", title="Toy Story", release_year="1995",
                             genres="Animation"),
        OLD_MOVIELENS.format(user_id="1", age="24", gender="M", occupation="technician", zip_code="85711",
                             history="GoldenEye, Toy Story", item_id="30", title="Four Rooms", release_year="1995",
                             genres="Thriller")]


def test_movielens_1m_ships_a_prompt_without_the_release_year(tmp_path: Path):
    """ML-1M has no release-year field (its titles keep the year): under the old name-prefix lookup it got
    MovieLens-100K's template and failed; now it ships its own."""
    from ctrbench_datasets.movielens1m import MovieLens1M
    from ctrbench_sllm4ctr.prompts import PromptBuilder

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "ratings.dat").write_text("1::10::5::100\n2::20::4::110\n1::20::4::120\n")
    (raw / "users.dat").write_text("1::F::25::4::48067\n2::M::56::16::70072\n")
    (raw / "movies.dat").write_text("10::Heat (1995)::Action|Crime\n20::Toy Story (1995)::Animation\n")
    data = MovieLens1M(source=str(raw), history_length=2).load(tmp_path / "cache")
    assert PromptBuilder(data)([2]) == [
        'User 1 is a female college/grad student aged 25-34 (zip code 48067). The user recently liked: '
        'Heat (1995). Movie 20 is "Toy Story (1995)" (Animation). Will user 1 like movie 20? Answer Yes or No. '
        'Answer:']
    assert MovieLens1M(source=str(raw), history_length=2).load(tmp_path / "cache").text == data.text  # cached load


def test_the_renderers_live_in_the_text_layer_only():
    import importlib.util

    import ctrbench.text as text

    assert importlib.util.find_spec("ctrbench.data.text") is None  # no second copy or shim left behind
    assert text.render_rows.__module__ == "ctrbench.text.templates"


# -- tokenizers built here (no files) -----------------------------------------------------------------------------

def _bert_tokenizer():
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz0123456789.,!'",
             *("##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"), "is", "user", "item", "id", "age",
             "gender", "title", "genres", "toy", "story", "heat", "up", "animation", "action", "crime"]
    return BertTokenizer(vocab={w: i for i, w in enumerate(words)}, model_max_length=64)


def _word_tokenizer(n_words: int = 40_000, padding_side: str = "right"):
    """A word-level fast tokenizer with ``n_words`` words ``w0 …``: ids past 32,767 test the uint16 widening."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<unk>", "<s>", "</s>", *(f"w{i}" for i in range(n_words))]
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>")
    fast.padding_side = padding_side
    return fast


def _direct(tok, texts, max_length, padding="max_length"):
    enc = tok(list(texts), padding=padding, truncation=True, max_length=max_length, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def _word_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 14, n)  # 0 words up to more than max_length: truncation and padding both occur
    return [" ".join(f"w{w}" for w in rng.integers(30_000, 40_000, k)) for k in lengths]


# -- the token table ------------------------------------------------------------------------------------------------

def test_id_dtype_is_the_smallest_unsigned_that_fits():
    assert [id_dtype(v) for v in (2, 256, 257, 30_522, 65_536, 65_537)] == [
        np.uint8, np.uint8, np.uint16, np.uint16, np.uint16, np.uint32]


def test_gathered_rows_equal_direct_tokenization_with_truncation_and_padding():
    tok = _bert_tokenizer()
    data = _data()
    table = TokenTable.for_rows(data, tok, max_length=16)
    texts = row_texts(data, np.arange(data.num_samples))
    assert table.ids.dtype == np.uint8 and table.lengths.dtype == np.uint8 and table.ids.shape == (6, 16)
    rows = torch.tensor([5, 0, 3, 3, 1])  # any order, repeats allowed
    ids, mask = table.gather(rows, "cpu")
    want_ids, want_mask = _direct(tok, [texts[r] for r in rows.tolist()], 16)
    assert ids.dtype == mask.dtype == torch.int64
    assert torch.equal(ids, want_ids) and torch.equal(mask, want_mask)
    assert min(len(tok(t)["input_ids"]) for t in texts) > 16  # every text is truncated ([SEP] kept last)
    assert table.lengths.tolist() == [16] * 6
    short = TokenTable.for_rows(data, tok, max_length=16, fields=["title"])  # and padded
    want_ids, want_mask = _direct(tok, row_texts(data, range(6), fields=["title"]), 16)
    assert short.lengths.tolist() == want_mask.sum(1).tolist() == [7, 6, 6, 6, 6, 7]  # [CLS] title is heat . [SEP]
    assert all(torch.equal(x, y) for x, y in zip(short.gather(range(6)), (want_ids, want_mask), strict=True))


def test_uint16_ids_past_32767_and_padding_are_exact():
    tok = _word_tokenizer()
    texts = _word_texts(300)
    table = TokenTable.from_texts(texts, tok, max_length=10, chunk=64)  # several chunks
    assert table.ids.dtype == np.uint16 and table.ids.max() > 32_767
    assert table.nbytes == 300 * 10 * 2 + 300  # 2 bytes an id, 1 byte a length (int64 ids + mask: 48,000)
    rows = np.random.default_rng(1).permutation(300)[:77]
    ids, mask = table.gather(torch.from_numpy(rows))
    want_ids, want_mask = _direct(tok, [texts[r] for r in rows], 10)
    assert torch.equal(ids, want_ids) and torch.equal(mask, want_mask)
    assert {int(m.sum()) for m in want_mask} >= {2, 10}  # empty texts ([<s>, </s>]) and truncated ones
    trimmed_ids, trimmed_mask = table.gather(rows[:5], trim=True)
    want_ids, want_mask = _direct(tok, [texts[r] for r in rows[:5]], 10, padding="longest")
    assert torch.equal(trimmed_ids, want_ids) and torch.equal(trimmed_mask, want_mask)


def test_left_padding_tokenizers_are_reproduced():
    tok = _word_tokenizer(n_words=500, padding_side="left")
    texts = [t.replace("w3", "w") for t in _word_texts(40, seed=2)]  # unknown words too
    table = TokenTable.from_texts(texts, tok, max_length=8)
    assert table.padding_side == "left"
    ids, mask = table.gather(list(range(40)))
    want_ids, want_mask = _direct(tok, texts, 8)
    assert torch.equal(ids, want_ids) and torch.equal(mask, want_mask)
    assert want_mask[:, 0].min() == 0 and want_mask[:, -1].min() == 1  # padding really is on the left
    t_ids, t_mask = table.gather([0, 1, 2], trim=True)
    want_ids, want_mask = _direct(tok, texts[:3], 8, padding="longest")
    assert torch.equal(t_ids, want_ids) and torch.equal(t_mask, want_mask)


def test_save_and_load_round_trip_atomically_and_check_the_key(tmp_path: Path):
    tok = _word_tokenizer(n_words=2_000)
    texts = [t.replace("w3", "w1") for t in _word_texts(50, seed=3)]
    key = {"what": "test", "n": 50}
    table = TokenTable.from_texts(texts, tok, max_length=12, key=key)
    table.save(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["ids.npy", "lengths.npy", "tokens.json"]
    for mmap in (False, True):
        back = TokenTable.load(tmp_path / "tok", key=key, mmap=mmap)
        assert back.ids.dtype == np.uint16 and back.key == key and len(back) == 50
        for a, b in zip(back.gather(range(50)), table.gather(range(50)), strict=True):
            assert torch.equal(a, b)
    with pytest.raises(DataError, match="built for another key"):
        TokenTable.load(tmp_path / "tok", key={**key, "n": 51})
    (tmp_path / "half").mkdir()
    np.save(tmp_path / "half" / "ids.npy", table.ids)
    with pytest.raises(DataError, match="tokens.json is missing"):
        TokenTable.load(tmp_path / "half")
    meta = json.loads((tmp_path / "tok" / "tokens.json").read_text())
    (tmp_path / "tok" / "tokens.json").write_text(json.dumps({**meta, "max_length": 13}))
    with pytest.raises(DataError, match="do not match tokens.json"):
        TokenTable.load(tmp_path / "tok")


def test_a_plm_wrapper_is_accepted_and_its_position_limit_enforced():
    from ctrbench_plm.masked_lm import random_bert

    plm = random_bert(max_positions=32)
    data = _data()
    table = TokenTable.for_rows(data, plm, max_length=20)
    ids, mask = table.gather(torch.arange(6))
    want_ids, want_mask = _direct(plm.tokenizer, row_texts(data, range(6)), 20)
    assert torch.equal(ids, want_ids) and torch.equal(mask, want_mask)
    with pytest.raises(ValueError, match="max_length 40 exceeds the model's 32 positions"):
        TokenTable.for_rows(data, plm, max_length=40)


def test_token_cache_key_changes_with_everything_the_tokens_depend_on():
    data, tok = _data(), _bert_tokenizer()
    base = token_cache_key(data, tok, texts="row", max_length=16)
    json.dumps(base)  # JSON-able: it is a stage key
    assert base == token_cache_key(data, tok, texts="row", max_length=16)
    assert base["data"] == "fp-text-1" and base["tokenizer"]["vocab_size"] == len(tok)
    changed = [
        token_cache_key(_data(fingerprint="fp-text-2"), tok, texts="row", max_length=16),
        token_cache_key(data, _word_tokenizer(n_words=10), texts="row", max_length=16),
        token_cache_key(data, tok, texts="row", max_length=17),
        token_cache_key(data, tok, texts="item", max_length=16),
        token_cache_key(data, tok, texts="row", max_length=16, fields=["title"]),
        token_cache_key(data, tok, texts="row", max_length=16, template="{title}"),
        token_cache_key(_data(text=TextSpec(labels={"age": "years"})), tok, texts="row", max_length=16),
        token_cache_key(data, tok, texts="user", max_length=16, history_items=3),
    ]
    assert all(k != base for k in changed)
    assert len({json.dumps(k, sort_keys=True) for k in changed}) == len(changed)
    other_vocab = _bert_tokenizer()
    other_vocab.add_tokens(["zzz"])
    assert token_cache_key(data, other_vocab, texts="row", max_length=16) != base
    # a shipped template and the same template passed explicitly are the same texts: the same key
    shipped = token_cache_key(_data(text=TextSpec(row="{title}")), tok, texts="row", max_length=16)
    assert shipped == token_cache_key(data, tok, texts="row", max_length=16, template="{title}") != base
    with pytest.raises(DataError, match="has no fingerprint"):
        token_cache_key(_data(fingerprint=""), tok, texts="row", max_length=16)


def test_tokenizer_identity_drops_a_per_host_model_folder():
    tok = _bert_tokenizer()
    tok.name_or_path = "/home/a/.cache/ctrbench/wheels/bert-tiny"
    a = tokenizer_identity(tok)
    tok.name_or_path = "/scratch/b/cache/wheels/bert-tiny"
    assert tokenizer_identity(tok) == a and a["name"] == "bert-tiny"
    tok.name_or_path = "prajjwal1/bert-tiny"
    assert tokenizer_identity(tok)["name"] == "prajjwal1/bert-tiny"


# -- MLM corruption ---------------------------------------------------------------------------------------------

def test_clickprompt_uses_the_core_masking_and_has_no_copy():
    import ctrbench_clickprompt.method as method

    assert method.mask_tokens is mask_tokens and method.IGNORE == IGNORE == -100
    assert not (Path(method.__file__).parent / "masking.py").exists()


def test_mask_tokens_draws_select_action_random_in_order_and_applies_80_10_10():
    """An independent elementwise reference from the same three draws (so the RNG use, hence ClickPrompt's
    results for a seed, stay what they were)."""
    ids = torch.randint(5, 60, (6, 20), generator=torch.Generator().manual_seed(3))
    can = torch.rand(6, 20, generator=torch.Generator().manual_seed(4)) > 0.2
    got_ids, got_labels = mask_tokens(ids, can, mask_token_id=4, vocab_size=60, mask_prob=0.4,
                                      generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    select, action = torch.rand(6, 20, generator=g), torch.rand(6, 20, generator=g)
    random_ids = torch.randint(60, (6, 20), generator=g)
    n_selected = 0
    for b in range(6):
        for t in range(20):
            chosen = bool(can[b, t]) and float(select[b, t]) < 0.4
            n_selected += chosen
            want = int(ids[b, t])
            if chosen and float(action[b, t]) < 0.8:
                want = 4
            elif chosen and float(action[b, t]) < 0.9:
                want = int(random_ids[b, t])
            assert int(got_ids[b, t]) == want
            assert int(got_labels[b, t]) == (int(ids[b, t]) if chosen else IGNORE)
    assert n_selected > 20
    g2 = torch.Generator().manual_seed(7)
    mask_tokens(ids, can, mask_token_id=4, vocab_size=60, mask_prob=0.4, generator=g2)
    assert torch.equal(g2.get_state(), g.get_state())  # exactly those three draws were consumed


def test_maskable_excludes_special_tokens_and_padding():
    tok = _bert_tokenizer()
    ids, mask = _direct(tok, ["user id is 12", "heat", ""], 8)
    can = maskable(ids, mask, tok.all_special_ids)
    assert can.tolist() == [[False, True, True, True, True, True, False, False],  # [CLS] user id is 1 ##2 [SEP]
                            [False, True, False, False, False, False, False, False],
                            [False] * 8]
    corrupted, labels = mask_tokens(ids, can, mask_token_id=tok.mask_token_id, vocab_size=len(tok), mask_prob=1.0,
                                    generator=torch.Generator().manual_seed(0))
    assert torch.equal(labels != IGNORE, can)  # with mask_prob 1, exactly the maskable positions are selected
    assert torch.equal(corrupted[~can], ids[~can])


# -- contrastive losses --------------------------------------------------------------------------------------------

def _naive_info_nce(a, b, tau, symmetric=True, normalize=True, keys=None):
    """Per-example loops over Python floats, log-softmax written out."""
    a, b = a.tolist(), b.tolist()
    n = len(a)

    def norm(v):
        s = math.sqrt(sum(x * x for x in v))
        return [x / s for x in v] if normalize else v

    a, b = [norm(v) for v in a], [norm(v) for v in b]

    def one_way(x, y):
        total = 0.0
        for i in range(n):
            logits = [sum(p * q for p, q in zip(x[i], y[j], strict=True)) / tau for j in range(n)
                      if j == i or keys is None or keys[i] != keys[j]]
            pos = sum(p * q for p, q in zip(x[i], y[i], strict=True)) / tau
            m = max(logits)
            total += -(pos - (m + math.log(sum(math.exp(v - m) for v in logits))))
        return total / n

    return (one_way(a, b) + one_way(b, a)) / 2 if symmetric else one_way(a, b)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("tau", [0.05, 0.5, 2.0])
def test_info_nce_equals_a_naive_loop(symmetric, normalize, tau):
    g = torch.Generator().manual_seed(11)
    a, b = torch.randn(7, 5, generator=g, dtype=torch.float64), torch.randn(7, 5, generator=g, dtype=torch.float64)
    got = info_nce(a, b, tau, symmetric=symmetric, normalize=normalize).item()
    assert got == pytest.approx(_naive_info_nce(a, b, tau, symmetric, normalize), rel=1e-10, abs=1e-12)


def test_info_nce_one_way_is_multiple_negatives_ranking_loss():
    """sentence-transformers' MultipleNegativesRankingLoss: cross-entropy of cos_sim * scale against arange."""
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    scale = 20.0
    cos = torch.stack([torch.stack([torch.cosine_similarity(a[i], b[j], dim=0) for j in range(6)]) for i in range(6)])
    mnrl = nn.functional.cross_entropy(cos * scale, torch.arange(6))
    assert info_nce(a, b, 1 / scale, symmetric=False).item() == pytest.approx(mnrl.item(), rel=1e-5)
    both = info_nce(a, b, 0.1)
    assert both.item() == pytest.approx((info_nce(a, b, 0.1, symmetric=False) + info_nce(b, a, 0.1, symmetric=False))
                                        .item() / 2, rel=1e-6)


def test_duplicate_keys_leave_the_negatives():
    g = torch.Generator().manual_seed(8)
    a, b = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 3, generator=g, dtype=torch.float64)
    keys = torch.tensor([4, 9, 4, 1, 9, 4])
    got = info_nce(a, b, 0.3, keys=keys).item()
    assert got == pytest.approx(_naive_info_nce(a, b, 0.3, keys=keys.tolist()), rel=1e-10)
    assert got != pytest.approx(info_nce(a, b, 0.3).item(), rel=1e-3)
    assert info_nce(a, b, 0.3, keys=torch.arange(6)).item() == pytest.approx(info_nce(a, b, 0.3).item(), rel=1e-12)


def test_temperature_scaling_of_aligned_orthonormal_pairs():
    """a = b = orthonormal rows: every positive has similarity 1, every negative 0, so the loss is exactly
    log(1 + (B - 1) e^{-1/τ}): ~0 for small τ, log B for large τ, increasing in τ."""
    z = torch.eye(8, dtype=torch.float64)[:5]
    losses = []
    for tau in (0.01, 0.1, 0.5, 1.0, 5.0, 1e4):
        loss = info_nce(z, z, tau).item()
        assert loss == pytest.approx(math.log(1 + 4 * math.exp(-1 / tau)), rel=1e-10, abs=1e-30)
        losses.append(loss)
    assert losses == sorted(losses) and losses[0] < 1e-40 and losses[-1] == pytest.approx(math.log(5), rel=1e-4)


def test_gradients_reach_both_sides_and_a_learned_temperature():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(5, 4, generator=g, requires_grad=True)
    b = torch.randn(5, 4, generator=g, requires_grad=True)
    log_tau = torch.tensor(math.log(0.07), requires_grad=True)
    info_nce(a, b, log_tau.exp()).backward()
    for t in (a, b, log_tau):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="temperature must be > 0"):
        info_nce(a, b, 0.0)
    with pytest.raises(ValueError, match=r"a and b must both be \[B, d\]"):
        info_nce(a, b[:4])


class _Encoder(nn.Module):
    """Embedding → dropout → masked mean: a sentence encoder whose only randomness is dropout."""

    def __init__(self, vocab: int = 50, dim: int = 16, p: float = 0.3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(vocab, dim)
        self.drop = nn.Dropout(p)
        self.calls: list[tuple[int, ...]] = []

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(ids.shape))
        h = self.drop(self.emb(ids)) * mask.unsqueeze(-1)
        return h.sum(1) / mask.sum(1, keepdim=True)


def test_simcse_without_dropout_is_the_loss_of_identical_views():
    enc = _Encoder().double().eval()
    ids = torch.randint(1, 50, (6, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[2, 5:] = 0
    loss = simcse_loss(enc, ids, mask, 0.05)
    assert enc.calls == [(12, 9)]  # both views in one forward, as the reference implementation does
    z = enc(ids, mask)
    assert loss.item() == pytest.approx(info_nce(z, z, 0.05, symmetric=False).item(), rel=1e-12)
    assert loss.item() == pytest.approx(_naive_info_nce(z, z, 0.05, symmetric=False), rel=1e-10)


def test_simcse_with_dropout_uses_two_different_views_and_trains_the_encoder():
    enc = _Encoder().double().train()
    ids = torch.randint(1, 50, (6, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        enc.eval()
        same = simcse_loss(enc, ids, mask, 0.05).item()
        enc.train()
    torch.manual_seed(3)
    loss = simcse_loss(enc, ids, mask, 0.05)
    assert loss.item() > same  # dropout views are not identical, so the positives are less similar
    loss.backward()
    assert enc.emb.weight.grad is not None and enc.emb.weight.grad.abs().sum() > 0
    torch.manual_seed(3)  # the same dropout masks: the same loss (no hidden randomness besides dropout)
    assert simcse_loss(enc, ids, mask, 0.05).item() == loss.item()


def test_simcse_on_a_masked_lm():
    from ctrbench_plm.masked_lm import random_bert

    plm = random_bert(seed=1)
    table = TokenTable.for_rows(_data(), plm, max_length=24)
    ids, mask = table.gather(torch.arange(6), trim=True)

    def encode(i: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return plm.pooled(plm.encode(i, m), m)

    plm.model.eval()
    with torch.no_grad():
        off = simcse_loss(encode, ids, mask, 0.05).item()
        z = encode(ids, mask)
    assert off == pytest.approx(info_nce(z, z, 0.05, symmetric=False).item(), rel=1e-5)
    plm.model.train()
    torch.manual_seed(0)
    loss = simcse_loss(encode, ids, mask, 0.05)
    loss.backward()
    assert loss.item() != pytest.approx(off, rel=1e-4)
    grads = [p.grad for p in plm.model.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0


def test_replace_keeps_the_text_spec():
    data = _data(text=TextSpec(prompt="{title}"))
    assert replace(data, fingerprint="x").text.prompt == "{title}"
