"""Pinned HF hub revisions: passed to every ``from_pretrained`` of the
encoders and recorded in the PET checkpoint's metadata."""
import pytest
import transformers

from sera_mm.engine.pet_checkpoint import collect_pretrained_sources
from sera_mm.utils.pretrained import hub_kwargs


class _Stop(Exception):
    pass


def test_hub_kwargs():
    assert hub_kwargs(None) == {}
    assert hub_kwargs(' 0123abc ') == dict(revision='0123abc')
    with pytest.raises(ValueError, match='revision'):
        hub_kwargs('')


@pytest.mark.parametrize('which', ['dinov2', 'clip_vision', 'clip_text',
                                   'hf_text'])
def test_encoders_pass_the_revision_to_the_hub(which, monkeypatch):
    seen = []

    def record(*args, **kwargs):
        seen.append(kwargs.get('revision'))
        raise _Stop

    monkeypatch.setattr(transformers.AutoConfig, 'from_pretrained', record)
    monkeypatch.setattr(transformers.AutoModel, 'from_pretrained', record)
    monkeypatch.setattr(transformers.CLIPVisionModel, 'from_pretrained',
                        record)
    hub_id = 'some-org/some-model'
    with pytest.raises(_Stop):
        if which == 'dinov2':
            from sera_mm.models.backbones.dinov2 import build_dinov2_model
            build_dinov2_model(hub_id, None, revision='abc123')
        elif which == 'clip_vision':
            from sera_mm.models.backbones.clip_vision import \
                build_clip_vision_model
            build_clip_vision_model(hub_id, None, revision='abc123')
        elif which == 'clip_text':
            from sera_mm.models.text_encoders.clip_text_encoder import \
                build_clip_text_model
            build_clip_text_model(hub_id, None, revision='abc123')
        else:
            from sera_mm.models.text_encoders.hf_text_encoder import \
                HFTextEncoder
            monkeypatch.setattr(transformers.AutoTokenizer,
                                'from_pretrained', lambda *a, **k: None)
            HFTextEncoder(pretrained=hub_id, revision='abc123')
    assert seen == ['abc123']


def test_pet_metadata_records_the_revision():
    cfg = dict(backbone=dict(pretrained='facebook/dinov2-base',
                             revision='abc123'),
               text_encoder=dict(encoder=dict(pretrained='openai/clip',
                                              revision='def456')))
    found = collect_pretrained_sources(cfg)
    assert found == {'backbone.pretrained': 'facebook/dinov2-base',
                     'backbone.revision': 'abc123',
                     'text_encoder.encoder.pretrained': 'openai/clip',
                     'text_encoder.encoder.revision': 'def456'}
