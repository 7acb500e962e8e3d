"""T5 caption features as LlamaGen computes them (`tensorar.data.text_features`).

A tiny random T5 encoder and tokenizer are built here and saved to a temporary directory (no download),
then loaded through our loader like a real flan-t5-xl directory. Checked: LlamaGen's caption cleaning on
tricky captions (outputs from LlamaGen's own `T5Embedder.text_preprocessing`, ftfy 6.3 / bs4 4.15), the
left-padded layout against the t2i reference fixture, fp32 output, the mask, truncation, batching
invariance, equality with the encoder run directly on one caption, and the condition feeding the t2i GPT.
"""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("ftfy")
pytest.importorskip("bs4")

from tensorar.data import text_features as tf  # noqa: E402
from tensorar.decoding.sampling import SamplingOptions  # noqa: E402
from tensorar.models.llamagen import GPT, GPTConfig  # noqa: E402

WORDS = "a the cat dog photo of on red blue table apple sitting mat next to door person riding horse tower at night"
CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'\"-:;"
WIDTH = 16  # the tiny encoder's d_model (flan-t5-xl: 2048)


def tiny_t5_dir(path):
    """A random 2-layer T5 encoder (flan-t5's gated-GELU FFN) and a small unigram T5 tokenizer in `path`."""
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [("▁" + w, -3.0) for w in WORDS.split()]  # whole words
    vocab += [(c, -5.0) for c in CHARS] + [("▁" + c, -5.5) for c in CHARS]  # any other word, letter by letter
    T5Tokenizer(vocab=vocab, extra_ids=0).save_pretrained(path)
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(vocab), d_model=WIDTH, d_kv=4, num_heads=4, d_ff=32, num_layers=2,
                      feed_forward_proj="gated-gelu", relative_attention_num_buckets=8,
                      relative_attention_max_distance=16, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    T5EncoderModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    return tiny_t5_dir(tmp_path_factory.mktemp("flan-t5-tiny"))


@pytest.fixture(scope="module")
def encoder(t5_dir):
    return tf.T5TextEncoder(t5_dir, dtype=torch.float32)


CAPTIONS = ["a cat on the mat", "A <b>red</b> apple on a table: https://example.com/apple.jpg",
            "the dog sitting next to the door", ""]


# --------------------------------------------------------------------------------------------------
# Caption cleaning (LlamaGen language/t5.py: clean_caption, twice)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("caption, cleaned", [
    # HTML tags and entities
    ("A <b>bold</b> cat &amp; a <i>dog</i> on the lawn", "a bold cat a dog on the lawn"),
    ("&amp;amp; ampersand &quot;quoted&quot; &lt;tag&gt;", 'ampersand "quoted"'),
    # URLs, shop boilerplate, product codes, image sizes and file names
    ("Visit https://example.com/path?x=1 or www.shop.org for FREE SHIPPING!!!", "visit ?x=1 or for !!!"),
    ("<person> riding a horse 1920x1080 image.jpg", "person riding a horse"),
    ("product 6640vc231 and j2d1a2a and ab1234 and 123456789 and #12345", "product and and and and"),
    ("***SALE*** #1 bestseller @seller page 12 click for more", "sale bestseller"),
    ("192.168.0.1 server rack 12:30  ", "server rack 12:30"),
    # unicode: typographic quotes and dashes, mojibake (ftfy), ligatures and full-width letters, CJK
    ("“Smart quotes” and ‘single’ — em dash – en dash",
     "\"smart quotes\" and 'single' - em dash - en dash"),
    ("an â€œofficialâ€\x9d logo", 'an "official" logo'),
    ("ﬁne ＡＢＣ letters", "fine abc letters"),
    ("東京 tower at night 夜景", "tower at night"),
    # percent-encoding, separators, surrounding quotes, edge punctuation, spacing
    ("a%20photo+of%20a%20cat", "a photo of a cat"),
    ("this-is-my-cute-cat_photo_jc6640", "this is my cute cat photo"),
    ('"A quoted caption"', "a quoted caption"),
    (", leading comma and trailing plus+", "leading comma and trailing plus"),
    ("a cat... sitting .  on a mat ,next to,the door", "a cat sitting on a mat , next to, the door"),
    ("  Mixed   whitespace\\nand a literal backslash-n  ", "mixed whitespace and a literal backslash-n"),
    (" ", ""),
])
def test_caption_cleaning(caption, cleaned):
    assert tf.preprocess_caption(caption) == cleaned


def test_cleaning_runs_twice():
    """Escaped HTML: the first pass unescapes it, the second strips the tags it revealed."""
    caption = "a cat &lt;b&gt;sleeping&lt;/b&gt;"
    once = tf.clean_caption(caption)
    assert once == "a cat <b>sleeping< b>"
    assert tf.preprocess_caption(caption) == tf.clean_caption(once) == "a cat sleeping< b>"
    assert tf.preprocess_caption("  A Cat <b>x</b> ", clean=False) == "a cat <b>x</b>"


# --------------------------------------------------------------------------------------------------
# The left-padded layout (spec §2.2)
# --------------------------------------------------------------------------------------------------
def test_left_pad_equals_llamagen_sampler(t2i_ref):
    """sample_t2i: flip the mask, roll the valid tokens to the end, multiply by the mask."""
    ref = torch.load(t2i_ref / "llamagen_t2i_tiny_ref.pt", weights_only=True)
    features, mask = tf.left_pad(ref["caption_raw"], ref["emb_masks_raw"])
    assert torch.equal(features, ref["caption"]) and torch.equal(mask, ref["emb_masks"].bool())
    assert (ref["caption_raw"][0, 7:] != 0).any()  # the raw features are not zero at padding: masking matters
    # dataset/t2i.py's layout of stored valid features (1, n, C): the same tensors.
    for row, n in enumerate(ref["config"]["valid_lens"]):
        valid = ref["caption_raw"][row : row + 1, :n]  # (1, n, C), as extract_t5_feature.py saves
        padded, row_mask = tf.pad_valid_features(valid)
        assert torch.equal(padded, ref["caption"][row]) and torch.equal(row_mask, ref["emb_masks"][row].bool())


def test_pad_valid_features_truncates_to_120():
    valid = torch.randn(1, 130, 4, dtype=torch.float16)
    padded, mask = tf.pad_valid_features(valid)
    assert padded.dtype == torch.float32 and mask.all()
    assert torch.equal(padded, valid[0, :120].float())


# --------------------------------------------------------------------------------------------------
# The encoder
# --------------------------------------------------------------------------------------------------
def test_missing_directory_names_it_and_where_to_get_it(tmp_path):
    missing = tmp_path / "pretrained_models" / "t5-ckpt" / "flan-t5-xl"
    with pytest.raises(FileNotFoundError, match="huggingface.co/google/flan-t5-xl") as err:
        tf.T5TextEncoder(missing)
    assert str(missing) in str(err.value)
    missing.mkdir(parents=True)  # a directory without a model in it
    with pytest.raises(FileNotFoundError, match="config.json"):
        tf.text_features(["a cat"], missing)


def test_features_are_left_padded_fp32_with_the_mask(encoder):
    out = encoder.encode(CAPTIONS)
    caption, mask = out["caption"], out["caption_mask"]
    assert caption.shape == (4, 120, WIDTH) and caption.dtype == torch.float32
    assert mask.shape == (4, 120) and mask.dtype == torch.bool
    tokens = encoder.tokenize(CAPTIONS)
    lengths = tokens["attention_mask"].sum(1)
    assert lengths.tolist()[0] == 6 and lengths.tolist()[3] == 1  # "▁a ▁cat ▁on ▁the ▁mat </s>"; "" -> "</s>"
    for row, n in enumerate(lengths.tolist()):
        assert not mask[row, : 120 - n].any() and mask[row, 120 - n :].all()  # valid tokens at the end
        assert caption[row, : 120 - n].abs().sum() == 0 and (caption[row, 120 - n :].abs().sum(-1) > 0).all()
    # The tokenizer saw the cleaned caption (LlamaGen: clean_caption twice), with </s> at the end.
    ids = tokens["input_ids"][1, : lengths[1]]
    assert encoder.tokenizer.decode(ids, skip_special_tokens=True) == tf.preprocess_caption(CAPTIONS[1])
    assert ids[-1] == encoder.tokenizer.eos_token_id


def test_features_equal_the_encoder_run_directly(encoder):
    """Padding changes nothing: the valid positions hold the encoder's output on the bare caption."""
    out = encoder.encode(CAPTIONS)
    for row, caption in enumerate(CAPTIONS):
        ids = encoder.tokenizer(tf.preprocess_caption(caption), return_tensors="pt")["input_ids"]  # (1, n)
        with torch.no_grad():
            direct = encoder.model(input_ids=ids).last_hidden_state[0]  # (n, C)
        n = ids.size(1)
        torch.testing.assert_close(out["caption"][row, 120 - n :], direct, rtol=1e-5, atol=1e-5)


def test_batching_invariance(encoder):
    together = encoder.encode(CAPTIONS)
    for row, caption in enumerate(CAPTIONS):
        alone = encoder.encode(caption)  # a single string is a batch of one
        assert torch.equal(alone["caption_mask"][0], together["caption_mask"][row])
        torch.testing.assert_close(alone["caption"][0], together["caption"][row], rtol=1e-5, atol=1e-6)


def test_long_captions_truncate_to_120_tokens_ending_in_eos(encoder):
    long = " ".join(["a red cat on the blue table"] * 40)
    tokens = encoder.tokenize([long])
    assert tokens["attention_mask"].sum() == 120 and tokens["input_ids"][0, -1] == encoder.tokenizer.eos_token_id
    assert encoder.encode([long])["caption_mask"].all()


def test_bf16_encoder_default_still_returns_fp32(t5_dir, encoder):
    """LlamaGen runs T5 in bf16 by default; our output is float32 either way."""
    out = tf.text_features(CAPTIONS[:2], t5_dir)
    assert out["caption"].dtype == torch.float32
    reference = encoder.encode(CAPTIONS[:2])
    assert torch.equal(out["caption_mask"], reference["caption_mask"])
    torch.testing.assert_close(out["caption"], reference["caption"], rtol=0.05, atol=0.05)


def test_features_condition_the_t2i_gpt(encoder):
    """The output is the t2i GPT's condition as is, CFG included (null caption under the same mask)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(dim=32, n_layer=1, n_head=2, multiple_of=32, vocab_size=32, block_size=4,
                          model_type="t2i", cls_token_num=120, caption_dim=encoder.dim)).eval()
    torch.nn.init.normal_(model.output.weight, std=0.5)
    cond = encoder.encode(CAPTIONS[:2])
    tokens = model.generate(cond, SamplingOptions(cfg_scale=4.0, greedy=True))
    assert tokens.shape == (2, 4)
    with torch.no_grad():
        logits, _ = model(tokens[:, :-1], cond)
    assert torch.isfinite(logits).all()
