"""SERA segmentor: text encoder -> adapted backbone -> fusion neck -> head,
with the referring expression read from every data sample."""
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.structures import PixelData
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.structures import SegDataSample
from mmseg.utils import (ConfigType, OptConfigType, OptMultiConfig,
                         OptSampleList, SampleList)
from torch import Tensor

from sera_mm.structures import undo_letterbox
from sera_mm.models.routers import (ExpertRouter, RoutingOutput,
                                   RoutingRecorder)
from sera_mm.structures import TextFeatures
from sera_mm.registry import MODELS

MetaOrSample = Union[SegDataSample, dict]


def _meta(item: MetaOrSample) -> dict:
    return item.metainfo if isinstance(item, SegDataSample) else item


def _moved_no_target_keys(state_dict: dict, prefix: str, *args) -> None:
    """State-dict pre-hook: ``no_target_head.*`` (the segmentor's branch
    of earlier releases) -> ``decode_head.no_target_head.*``."""
    old = prefix + 'no_target_head.'
    for key in [k for k in state_dict if k.startswith(old)]:
        state_dict[prefix + 'decode_head.' + key[len(prefix):]] = \
            state_dict.pop(key)


@MODELS.register_module()
class SERASegmentor(BaseSegmentor):
    """Referring image segmentor.

    Data flow for images (B, 3, H, W) and one expression per sample (the
    metainfo ``text`` of each data sample)::

        text = text_encoder(texts)                 # TextFeatures
        grids = backbone(images, text)             # [(B, C_i, h_i, w_i)]
        fused = neck(grids, text)                  # (B, C_f, h, w)
        logits = decode_head((fused, text))        # (B, 1, h', w')

    The text encoder is built first; its ``embed_dim`` is given as
    ``text_channels`` to the backbone, neck and head configs (unless they
    set it), the neck's ``in_channels`` default to the backbone's
    ``out_channels`` and the head's ``in_channels`` to the neck's output
    width (``out_channels`` or ``channels``).

    Training adds the routers' auxiliary losses, each the mean over every
    :class:`ExpertRouter` that ran in the forward times its weight, logged
    under its own key and skipped when its weight is 0 (or no router ran):
    ``loss_balance`` (:meth:`ExpertRouter.balance_loss`), ``loss_z`` (the
    paper's z-loss, mean squared routing logit), ``loss_z_lse`` (ST-MoE's
    z-loss, mean squared log-sum-exp) and ``loss_assign`` (the
    token-assignment regulariser, mean normalised routing entropy).

    Prediction undoes the letterbox (crop ``img_padding_size``, resize to
    ``ori_shape``), keeps the raw logits in ``seg_logits`` and thresholds
    ``sigmoid(logits) > decode_head.threshold`` into ``pred_sem_seg``. The
    metainfo ``routing`` maps every router's module name (e.g.
    ``'backbone.adapters.3.router'``, ``'neck.routers.0'``) to
    ``{'experts': [names], 'weights': [floats], 'gates': [floats]}`` for
    that sample: ``weights`` is the router's distribution (pre-top-k
    probabilities, summing to 1), ``gates`` what the experts were mixed
    with (zeros for experts top-k routing did not run).

    Only ``test_cfg.mode='whole'`` is supported: sliding windows would cut
    the referred object out of context, which is meaningless for RIS.

    Generalised RIS (an expression may name nothing): the decision is part
    of the decode head (``decode_head=dict(no_target_head=...)``, see
    :class:`~sera_mm.models.heads.SERAHead`), which adds its loss and, at
    prediction, empties the mask of the samples it calls no-target. Any
    per-sample value a head writes into the meta dicts it is given (the
    no-target branch's ``no_target_score``) is copied into the metainfo of
    the returned samples. Checkpoints written when the branch was the
    segmentor's ``no_target_head`` load into the new place.

    Args:
        text_encoder: text encoder config.
        backbone: backbone config (``forward(img, text)``).
        neck: neck config (``forward(grids, text)``).
        decode_head: head config (``forward((fused, text))``).
        data_preprocessor: ``ReferDataPreProcessor`` (or mmseg's
            ``SegDataPreProcessor``) config.
        train_cfg: unused, kept for mmseg compatibility.
        test_cfg: dict(mode='whole').
        balance_loss_weight: weight of the routers' load-balancing loss.
        z_loss_weight: weight of the paper's router z-loss.
        z_lse_loss_weight: weight of ST-MoE's router z-loss.
        assign_loss_weight: weight of the token-assignment regulariser.
        no_target_head: no longer accepted here: the branch moved into
            the decode head (a clear error says how to write it).
        channels_last: run the image path in channels-last (NHWC) memory
            format: the input batch is converted before the backbone, and
            the convolutions follow it (their weights stay as they are, so
            checkpoints do not change). Same predictions up to float
            rounding; faster convolutions on CPUs with oneDNN (see the
            README's performance section). Off by default.
        init_cfg: initialisation config.
    """

    def __init__(self,
                 text_encoder: ConfigType,
                 backbone: ConfigType,
                 neck: ConfigType,
                 decode_head: ConfigType,
                 data_preprocessor: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 balance_loss_weight: float = 0.01,
                 z_loss_weight: float = 0.0,
                 z_lse_loss_weight: float = 0.0,
                 assign_loss_weight: float = 0.0,
                 no_target_head: OptConfigType = None,
                 channels_last: bool = False,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.channels_last = bool(channels_last)
        test_cfg = dict(test_cfg or dict(mode='whole'))
        mode = test_cfg.get('mode', 'whole')
        if mode != 'whole':
            raise ValueError(f"test_cfg.mode must be 'whole' for referring "
                             f'segmentation, got {mode!r}')
        self.aux_loss_weights = {}
        for key, value in (('balance', balance_loss_weight),
                           ('z', z_loss_weight),
                           ('z_lse', z_lse_loss_weight),
                           ('assign', assign_loss_weight)):
            if not value >= 0:
                raise ValueError(f'{key}_loss_weight must be >= 0, got '
                                 f'{value}')
            self.aux_loss_weights[key] = float(value)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self.balance_loss_weight = float(balance_loss_weight)

        self.text_encoder = MODELS.build(text_encoder)
        text_channels = int(self.text_encoder.embed_dim)

        backbone = copy.deepcopy(dict(backbone))
        backbone.setdefault('text_channels', text_channels)
        self.backbone = MODELS.build(backbone)

        neck = copy.deepcopy(dict(neck))
        neck.setdefault('text_channels', text_channels)
        neck.setdefault('in_channels', list(self.backbone.out_channels))
        self.neck = MODELS.build(neck)

        decode_head = copy.deepcopy(dict(decode_head))
        decode_head.setdefault('text_channels', text_channels)
        neck_out = getattr(self.neck, 'out_channels',
                           getattr(self.neck, 'channels', None))
        if neck_out is not None:
            decode_head.setdefault('in_channels', int(neck_out))
        if no_target_head is not None:
            raise ValueError(
                'model.no_target_head moved into the decode head: write '
                'model=dict(decode_head=dict(no_target_head=dict('
                f"type={dict(no_target_head).get('type')!r}, ...))) "
                '(checkpoints with the old keys load as they are)')
        self.decode_head = MODELS.build(decode_head)
        self._register_load_state_dict_pre_hook(_moved_no_target_keys)
        self.align_corners = self.decode_head.align_corners
        self.num_classes = self.decode_head.num_classes
        self.out_channels = self.decode_head.out_channels

    # ------------------------------------------------------------------ #
    @staticmethod
    def texts_from(items: Sequence[MetaOrSample],
                   batch_size: Optional[int] = None) -> List[str]:
        """The expression of every sample (data samples or metainfo dicts).

        Raises:
            ValueError: ``items`` is None/empty, a text is missing or empty,
                or the number of texts differs from ``batch_size``.
        """
        if not items:
            raise ValueError('SERASegmentor needs data samples carrying the '
                             "metainfo 'text' (the referring expression); "
                             'got none')
        texts = []
        for i, item in enumerate(items):
            meta = _meta(item)
            text = meta.get('text')
            if not isinstance(text, str) or not text.strip():
                raise ValueError(
                    f'sample {i} (sent_id={meta.get("sent_id")!r}) has no '
                    f"referring expression: metainfo 'text' is {text!r}")
            texts.append(text)
        if batch_size is not None and len(texts) != batch_size:
            raise ValueError(f'got {len(texts)} texts for a batch of '
                             f'{batch_size} images')
        return texts

    def encode_text(self, texts: Sequence[str]) -> TextFeatures:
        """Run the text encoder: list of B strings -> TextFeatures."""
        return self.text_encoder(list(texts))

    def extract_feat(
        self, inputs: Tensor, data_samples: Sequence[MetaOrSample]
    ) -> Tuple[Tensor, TextFeatures]:
        """Images (B, 3, H, W) and their samples -> (fused (B, C_f, h, w),
        TextFeatures)."""
        if inputs.dim() != 4:
            raise ValueError(f'inputs must have shape (B, 3, H, W), got '
                             f'{tuple(inputs.shape)}')
        texts = self.texts_from(data_samples, inputs.shape[0])
        text = self.encode_text(texts)
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        grids = self.backbone(inputs, text)
        fused = self.neck(grids, text)
        return fused, text

    def encode_decode(self, inputs: Tensor,
                      batch_img_metas: List[dict]) -> Tensor:
        """Logits (B, 1, H_pad, W_pad) at the padded input size; the
        expressions are read from ``batch_img_metas[i]['text']``."""
        feats = self.extract_feat(inputs, batch_img_metas)
        return self.decode_head.predict(feats, batch_img_metas,
                                        self.test_cfg)

    # ------------------------------------------------------------------ #
    def routers(self) -> List[Tuple[str, ExpertRouter]]:
        """Every :class:`ExpertRouter` in the model with its module name."""
        return [(name, m) for name, m in self.named_modules()
                if isinstance(m, ExpertRouter)]

    def balance_loss(self) -> Optional[Tensor]:
        """Mean load-balancing loss of the routers that ran (None if
        none did)."""
        return self.router_losses(('balance', )).get('balance')

    def router_losses(self, keys: Sequence[str] = ('balance', 'z', 'z_lse',
                                                   'assign'),
                      outputs: Optional[Sequence[RoutingOutput]] = None
                      ) -> Dict[str, Tensor]:
        """Unweighted auxiliary router losses, each the mean over the
        routers that ran (``{}`` if none did): of the routing ``outputs`` a
        forward returned (:meth:`extract_feat_and_routing`), or, without
        them, of every router's last forward."""
        if outputs is None:
            ran = [(r, None) for _, r in self.routers()
                   if r.last_weights is not None]
        else:
            ran = [(o.router, o) for o in outputs]
        if not ran:
            return {}
        per_key = {k: [] for k in keys}
        for router, output in ran:
            values = router.aux_losses(keys, output)
            for k in keys:
                per_key[k].append(values[k].reshape(()))
        return {k: torch.stack(v).mean() for k, v in per_key.items()}

    def extract_feat_and_routing(
        self, inputs: Tensor, data_samples: Sequence[MetaOrSample]
    ) -> Tuple[Tuple[Tensor, TextFeatures], List[RoutingOutput]]:
        """:meth:`extract_feat` plus the :class:`RoutingOutput` of every
        router that ran in this forward (in execution order)."""
        with RoutingRecorder() as recorder:
            feats = self.extract_feat(inputs, data_samples)
        return feats, recorder.outputs

    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        """Head losses plus the routers' auxiliary losses.

        Args:
            inputs: images (B, 3, H, W).
            data_samples: samples with ``gt_sem_seg`` and metainfo ``text``.
        """
        for i, sample in enumerate(data_samples):
            if 'gt_sem_seg' not in sample or 'data' not in sample.gt_sem_seg:
                raise ValueError(
                    f'SERASegmentor.loss: data_samples[{i}] has no '
                    f'gt_sem_seg mask (expected one per sample: a training '
                    f'pipeline loads it with LoadReferMask, and batches of '
                    f"collate_fn=dict(type='sera_mm.refer_collate') need "
                    f"data_preprocessor=dict(type='ReferDataPreProcessor',"
                    f' ...) to put their masks back)')
        # the routing losses come from what this forward's routers
        # returned, not from module state another forward may overwrite
        feats, routing = self.extract_feat_and_routing(inputs, data_samples)
        losses = self.decode_head.loss(feats, data_samples, self.train_cfg)
        active = [k for k, w in self.aux_loss_weights.items() if w > 0]
        if active:
            for key, value in self.router_losses(active, routing).items():
                losses[f'loss_{key}'] = self.aux_loss_weights[key] * value
        return losses

    def predict(self,
                inputs: Tensor,
                data_samples: OptSampleList = None) -> SampleList:
        """Masks at the original resolution plus routing weights.

        Returns:
            list[SegDataSample]: with ``seg_logits`` (1, H_ori, W_ori)
            logits, ``pred_sem_seg`` (1, H_ori, W_ori) in {0, 1},
            metainfo ``routing`` and what the head reported per sample
            (``no_target_score`` with a no-target branch).
        """
        if data_samples is None:
            raise ValueError('SERASegmentor.predict needs data samples with '
                             "the metainfo 'text'")
        batch_img_metas = [s.metainfo for s in data_samples]
        # encode_decode, keeping this forward's routing
        feats, routing = self.extract_feat_and_routing(inputs,
                                                       batch_img_metas)
        seg_logits = self.decode_head.predict(feats, batch_img_metas,
                                              self.test_cfg)
        results = self.postprocess_result(seg_logits, data_samples)
        for sample, meta in zip(results, batch_img_metas):
            known = sample.metainfo
            added = {k: v for k, v in meta.items() if k not in known}
            if added:  # per-sample outputs of the head
                sample.set_metainfo(added)
        names = {id(r): n for n, r in self.routers()}
        per_router = []
        for out in routing:
            probs, gates = out.probs.detach(), out.gates.detach()
            if probs.dim() == 4:  # per-location: mean over the grid
                probs, gates = probs.mean(dim=(2, 3)), gates.mean(dim=(2, 3))
            per_router.append((names.get(id(out.router), 'router'),
                               out.router, probs.float().cpu(),
                               gates.float().cpu()))
        for i, sample in enumerate(results):
            meta = {}
            for name, router, probs, gates in per_router:
                meta[name] = {
                    'experts': list(router.expert_names),
                    'weights': [float(w) for w in probs[i].tolist()],
                    'gates': [float(g) for g in gates[i].tolist()]
                }
            sample.set_metainfo(dict(routing=meta))
        return results

    def postprocess_result(self,
                           seg_logits: Tensor,
                           data_samples: OptSampleList = None) -> SampleList:
        """Undo the letterbox and threshold.

        For each sample: crop ``img_padding_size`` ([left, right, top,
        bottom]) from the padded logits, undo a flip, resize bilinearly to
        ``ori_shape``; ``seg_logits`` keeps the logits and ``pred_sem_seg``
        is ``sigmoid > threshold`` as int64 {0, 1}. Without data samples
        the logits are returned at their own size.
        """
        b, c, h, w = seg_logits.shape
        if c != 1:
            return super().postprocess_result(seg_logits, data_samples)
        only_prediction = data_samples is None
        if only_prediction:
            data_samples = [SegDataSample() for _ in range(b)]
        threshold = self.decode_head.threshold
        for i in range(b):
            logits = seg_logits[i]  # (1, h, w)
            if not only_prediction:
                meta = data_samples[i].metainfo
                logits = undo_letterbox(
                    logits,
                    meta.get('img_padding_size',
                             meta.get('padding_size', [0] * 4)),
                    meta['ori_shape'],
                    align_corners=self.align_corners)
                if meta.get('flip', False):  # the resize is flip-symmetric
                    direction = meta.get('flip_direction', 'horizontal')
                    logits = logits.flip(
                        dims=(2, ) if direction == 'horizontal' else (1, ))
            pred = (logits.sigmoid() > threshold).long()
            data_samples[i].set_data({
                'seg_logits': PixelData(data=logits),
                'pred_sem_seg': PixelData(data=pred)
            })
        return data_samples

    def _forward(self,
                 inputs: Tensor,
                 data_samples: OptSampleList = None) -> Tensor:
        """Head logits (B, 1, h', w') without post-processing."""
        feats = self.extract_feat(inputs, data_samples)
        return self.decode_head.forward(feats)
